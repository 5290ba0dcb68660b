"""The `lipdub` command: a thin front end over the Python API.

Each subcommand parses its arguments, calls one library function and prints the result. User
errors (``LipdubError``) become one line on stderr and a non-zero exit; imports of heavy stages
happen inside the handlers so `lipdub --help` stays instant.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from lipdub import __version__
from lipdub.errors import LipdubError


def _cmd_prepare(args: argparse.Namespace) -> int:
    from lipdub.avatar import PrepareOptions, prepare

    try:
        options = PrepareOptions(fps=args.fps, smooth=args.smooth, face_index=args.face,
                                 max_size=args.max_size)
    except ValueError as exc:
        raise LipdubError(f"invalid option: {exc}") from None
    avatar = prepare(args.input, args.output, options, overwrite=args.overwrite)
    m = avatar.manifest
    print(f"prepared {avatar.path}: {avatar.n_frames} frames {avatar.width}x{avatar.height} "
          f"at {avatar.fps:g} fps in {m['prepare_seconds']:.1f} s ({m['prepare_fps']:.1f} frames/s)")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from lipdub.metrics import compare_videos, format_report

    result = compare_videos(args.a, args.b, fps=args.fps, mouth=not args.no_mouth,
                            side_by_side=args.side_by_side, plot=args.plot)
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(format_report(result))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from lipdub.avatar import Avatar
    from lipdub.render.train import TrainOptions, train_renderer

    try:
        options = TrainOptions(minutes=args.minutes, epochs=args.epochs, size=args.size,
                               seed=args.seed, device=args.device, resume=args.resume)
    except ValueError as exc:
        raise LipdubError(f"invalid option: {exc}") from None
    onnx_path = train_renderer(Avatar.load(args.avatar), options)
    print(f"trained renderer: {onnx_path}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from lipdub.render.train import export_renderer

    print(f"exported and validated: {export_renderer(args.avatar)}")
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    from lipdub.pipeline import GenerateOptions, generate

    try:
        options = GenerateOptions(template=args.template, shapes=args.shapes,
                                  mouth_scale=args.mouth_scale, motion_smooth=args.motion_smooth,
                                  crf=args.crf, preset=args.preset)
    except ValueError as exc:
        raise LipdubError(f"invalid option: {exc}") from None
    out = generate(args.avatar, args.audio, args.output, options)
    print(f"wrote {out}")
    return 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    from lipdub.doctor import format_checks, run_checks

    checks = run_checks()
    print(format_checks(checks))
    return 0 if all(c.ok for c in checks) else 1


def _cmd_serve(args: argparse.Namespace) -> int:
    from lipdub.server import ServerConfig, serve

    config = ServerConfig(host=args.host, port=args.port, data_dir=Path(args.data_dir),
                          workers=args.workers,
                          api_key=args.api_key or os.environ.get("LIPDUB_API_KEY") or None,
                          max_upload_bytes=args.max_upload_mb * 1024 * 1024,
                          train_minutes=args.train_minutes)
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

    run_worker(WorkerConfig(broker=args.broker, storage=Path(args.storage),
                            cache_dir=Path(args.cache_dir), concurrency=args.concurrency,
                            loglevel=args.log_level))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lipdub",
        description="Make the person in a video or photo say any speech audio (offline, CPU).")
    parser.add_argument("--version", action="version", version=f"lipdub {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("prepare", help="prepare an avatar from a video or photo",
                       description="Track the face in every frame of INPUT and store an avatar "
                                   "(frames, landmarks, crops, audio features) in AVATAR_DIR.")
    p.add_argument("input", help="video or photo of one person")
    p.add_argument("-o", "--output", required=True, metavar="AVATAR_DIR", help="avatar folder to write")
    p.add_argument("--fps", type=float, default=25.0, help="frame rate of the avatar (default 25)")
    p.add_argument("--smooth", type=int, default=5,
                   help="landmark smoothing window in frames, centred; 1 = off (default 5)")
    p.add_argument("--face", type=int, default=None, metavar="N",
                   help="with several faces, use the N-th from the left (0-based); default: the largest")
    p.add_argument("--max-size", type=int, default=None, metavar="PX",
                   help="downscale so the longer side is at most PX")
    p.add_argument("--overwrite", action="store_true", help="replace an existing avatar folder")
    p.set_defaults(func=_cmd_prepare)

    p = sub.add_parser("compare", help="compare two videos (pixels and mouth motion)",
                       description="PSNR, SSIM, pixel differences and mouth-aperture agreement of A and B.")
    p.add_argument("a", help="first video (the reference)")
    p.add_argument("b", help="second video")
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    p.add_argument("--fps", type=float, default=25.0, help="rate both are sampled at (default 25)")
    p.add_argument("--no-mouth", action="store_true", help="skip face tracking (pixel metrics only)")
    p.add_argument("--side-by-side", metavar="OUT.mp4", default=None, help="write A|B side by side")
    p.add_argument("--plot", metavar="P.png", default=None, help="plot both mouth-aperture curves")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("train", help="train an avatar's mouth renderer",
                       description="Train the per-avatar renderer on the avatar's own frames and "
                                   "write a validated ONNX model into AVATAR_DIR.")
    p.add_argument("avatar", metavar="AVATAR_DIR", help="a folder made by `lipdub prepare`")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, default=None, help="training time budget (default 15)")
    budget.add_argument("--epochs", type=float, default=None, help="passes over the frames instead")
    p.add_argument("--size", type=int, default=128, help="crop side in pixels (default 128; up to 320)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("export", help="re-export and validate an avatar's ONNX renderer",
                       description="Export AVATAR_DIR's trained renderer to ONNX again and check it "
                                   "against PyTorch on real crops (PSNR >= 40 dB).")
    p.add_argument("avatar", metavar="AVATAR_DIR", help="a trained avatar folder")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("generate", help="dub speech audio onto an avatar",
                       description="Write OUT.mp4: the avatar (a prepared folder, or a raw video, "
                                   "prepared and trained once and cached) saying the audio.")
    p.add_argument("--avatar", required=True, help="avatar folder, or a video to prepare+train first")
    p.add_argument("--audio", required=True, help="speech audio (any ffmpeg-readable file)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.mp4", help="video to write")
    p.add_argument("--template", default=None, metavar="AVATAR_DIR",
                   help="other prepared footage of the same person to draw the frames from")
    p.add_argument("--shapes", choices=["audio", "template"], default="audio",
                   help="mouth shapes from the audio (default) or the template's own mouths")
    p.add_argument("--mouth-scale", type=float, default=1.0,
                   help="mouth-opening amplitude, 1 = the avatar's own range (default 1)")
    p.add_argument("--motion-smooth", type=float, default=1.0,
                   help="temporal smoothing of the mouth motion, in frames (default 1)")
    p.add_argument("--crf", type=int, default=18, help="x264 quality, lower is better (default 18)")
    p.add_argument("--preset", default="veryfast", help="x264 preset (default veryfast)")
    p.set_defaults(func=_cmd_generate)

    p = sub.add_parser("doctor", help="check the installation and bundled models",
                       description="Report versions of ffmpeg, mediapipe, onnxruntime and torch, check "
                                   "that the bundled models load, and say how to fix what is missing.")
    p.set_defaults(func=_cmd_doctor)

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
                   help="training budget per new avatar (default: the trainer's)")
    p.add_argument("--broker", default=os.environ.get("LIPDUB_BROKER"), metavar="URL",
                   help="run jobs on `lipdub worker`s through this Redis (redis://HOST:PORT/0) "
                        "instead of in this process; --data-dir must then be a folder every "
                        "worker mounts (default $LIPDUB_BROKER, else in-process workers)")
    p.add_argument("--max-attempts", type=int, default=3, metavar="N",
                   help="with --broker: a job whose worker dies N times is failed (default 3)")
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
    p.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"],
                   help="log detail (default warning)")
    p.set_defaults(func=_cmd_worker)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except LipdubError as exc:
        print(f"lipdub: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("lipdub: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
