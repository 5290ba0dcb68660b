"""`lipdub serve` (web service) and `lipdub worker` (scale-out on many machines)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from lipdub.errors import LipdubError


def _cmd_serve(args: argparse.Namespace) -> int:
    from lipdub.server import ServerConfig, serve

    try:
        config = ServerConfig(host=args.host, port=args.port, data_dir=Path(args.data_dir),
                              workers=args.workers,
                              api_key=args.api_key or os.environ.get("LIPDUB_API_KEY") or None,
                              max_upload_bytes=args.max_upload_mb * 1024 * 1024,
                              train_on_prepare=args.train_minutes is not None,
                              train_minutes=args.train_minutes, keep_days=args.keep_days,
                              max_data_bytes=args.max_data_mb * 1024 * 1024 if args.max_data_mb else None,
                              min_free_bytes=args.min_free_mb * 1024 * 1024,
                              shutdown_grace=args.shutdown_grace)
    except ValueError as exc:
        raise LipdubError(f"invalid option: {exc}") from None
    if config.api_key is None and args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"lipdub: warning: listening on {args.host} without --api-key: anyone who can reach "
              "this port can upload and run jobs", file=sys.stderr)
    if args.broker:
        from lipdub.scale.client import serve as serve_scaled

        serve_scaled(config, args.broker, max_attempts=args.max_attempts)
    else:
        serve(config)
    return 0


def _cmd_worker(args: argparse.Namespace) -> int:
    from lipdub.scale.worker import WorkerConfig, run_worker

    try:
        config = WorkerConfig(broker=args.broker, storage=Path(args.storage),
                              cache_dir=Path(args.cache_dir), concurrency=args.concurrency,
                              loglevel=args.log_level,
                              cache_max_bytes=args.cache_max_mb * 1024 * 1024 if args.cache_max_mb else None)
    except ValueError as exc:
        raise LipdubError(f"invalid option: {exc}") from None
    run_worker(config)
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("serve", help="run the web service and browser page",
                       description="Serve the HTTP API (OpenAPI at /docs) and the browser page at /, "
                                   "with a job queue kept in DIR that survives restarts.")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    p.add_argument("--data-dir", default="lipdub-data", metavar="DIR",
                   help="jobs database, uploads, avatars and results (default ./lipdub-data)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="jobs run at the same time, each in its own process (default 1)")
    p.add_argument("--api-key", default=None, metavar="KEY",
                   help="require KEY (X-API-Key or Authorization: Bearer) on every route but "
                        "/health and the page; default $LIPDUB_API_KEY, else no key")
    p.add_argument("--max-upload-mb", type=int, default=500, metavar="MB",
                   help="largest request body accepted (default 500)")
    p.add_argument("--train-minutes", type=float, default=None, metavar="MIN",
                   help="also train the optional U-Net refinement of each new avatar for MIN "
                        "minutes (default: no training; an avatar is ready once prepared)")
    p.add_argument("--broker", default=os.environ.get("LIPDUB_BROKER"), metavar="URL",
                   help="run jobs on `lipdub worker`s through this Redis (redis://HOST:PORT/0) "
                        "instead of in this process; --data-dir must then be a folder every "
                        "worker mounts (default $LIPDUB_BROKER, else in-process workers)")
    p.add_argument("--max-attempts", type=int, default=3, metavar="N",
                   help="with --broker: a job whose worker dies N times is failed (default 3)")
    p.add_argument("--keep-days", type=float, default=None, metavar="D",
                   help="delete the results and uploads of jobs that ended D days ago, and their "
                        "records (default: keep until deleted; avatars always stay)")
    p.add_argument("--max-data-mb", type=int, default=None, metavar="MB",
                   help="cap on the data folder: past it the longest-finished jobs are removed "
                        "first, never a running one (default: no cap)")
    p.add_argument("--min-free-mb", type=int, default=64, metavar="MB",
                   help="refuse uploads (507) when the disk has less free space (default 64)")
    p.add_argument("--shutdown-grace", type=float, default=10.0, metavar="S",
                   help="on SIGTERM, running jobs get S seconds to finish before they are "
                        "re-queued for the next start (default 10)")
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("worker", help="run jobs from a broker (scale-out on many machines)",
                       description="Take jobs queued by `lipdub serve --broker` (or `lipdub batch "
                                   "--broker`) from Redis and run them, N at a time.")
    p.add_argument("--broker", default=os.environ.get("LIPDUB_BROKER"),
                   required=not os.environ.get("LIPDUB_BROKER"), metavar="URL",
                   help="the Redis the server uses, e.g. redis://10.0.0.5:6379/0 "
                        "(default $LIPDUB_BROKER)")
    p.add_argument("--concurrency", "-c", type=int, default=1, metavar="N",
                   help="jobs run at the same time, each in its own process (default 1; at most "
                        "the core count)")
    p.add_argument("--storage", "--data-dir", dest="storage", default="lipdub-data", metavar="DIR",
                   help="the server's --data-dir as mounted on this machine (default ./lipdub-data)")
    p.add_argument("--cache-dir", default="lipdub-worker", metavar="DIR",
                   help="local disk for cached avatars and job scratch (default ./lipdub-worker)")
    p.add_argument("--cache-max-mb", type=int, default=None, metavar="MB",
                   help="LRU cap on the cached avatars: the least recently used go first, never "
                        "one a running job uses (default: no cap)")
    p.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"],
                   help="log detail (default warning)")
    p.set_defaults(func=_cmd_worker)
