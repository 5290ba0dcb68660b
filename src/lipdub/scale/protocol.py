"""What the server (or a batch client) and the workers agree on: Redis keys, messages, events.

Celery carries one message per job attempt to the task ``lipdub.run_job``. Everything else goes
through plain Redis keys, all under ``lipdub:``:

- ``lipdub:job:<id>`` (hash): ``token`` of the current attempt, ``reply`` (the event stream of
  the store that owns the job), ``published`` (time), ``cancel`` ("1" once cancelled). A message
  whose token is not the current one is stale (re-delivered, superseded) and is dropped; the key
  goes when the job ends.
- ``lipdub:lease:<id>``: "<worker>|<token>" while a worker runs the job, with a short TTL the
  worker keeps renewing. A running job whose lease is gone has lost its worker.
- ``lipdub:events:<owner>`` (stream): started / progress / finished events from workers. The
  owner (the server) applies them to its SQLite store, which stays the only source of truth.
- ``lipdub:workers`` (hash): worker id -> JSON self-description with a timestamp (for /health).
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from lipdub.errors import MissingDependencyError

TASK = "lipdub.run_job"
QUEUE = "lipdub"
WORKERS_KEY = "lipdub:workers"
#: Events kept per stream at most (approximate trim): a server down for long loses only progress.
STREAM_MAXLEN = 100_000


def job_key(job_id: str) -> str:
    return f"lipdub:job:{job_id}"


def lease_key(job_id: str) -> str:
    return f"lipdub:lease:{job_id}"


def events_key(owner: str) -> str:
    return f"lipdub:events:{owner}"


@dataclass(frozen=True)
class Timing:
    """Failure-detection times, shared by both sides (tests shorten them)."""

    #: A running job whose lease has not been renewed for this long has lost its worker.
    lease_ttl: float = 15.0
    #: How often a worker renews its leases and its entry in lipdub:workers.
    heartbeat: float = 3.0
    #: Redis re-delivers a message not acknowledged after this long (a worker that vanished with
    #: a job it had reserved). Longer than any job: the lease, not this, catches dead workers
    #: fast; a re-delivered copy of a job still running is dropped by its lease.
    visibility_timeout: float = 6 * 3600.0

    @classmethod
    def from_env(cls) -> "Timing":
        """LIPDUB_LEASE_TTL / LIPDUB_HEARTBEAT override the defaults (tests, benchmarks)."""
        ttl = float(os.environ.get("LIPDUB_LEASE_TTL", cls.lease_ttl))
        beat = float(os.environ.get("LIPDUB_HEARTBEAT", min(cls.heartbeat, ttl / 4)))
        return cls(lease_ttl=ttl, heartbeat=beat)


def redact(url: str) -> str:
    """The broker URL without its password, for logs and /health."""
    parts = urlsplit(url)
    if parts.password:
        netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def _need(module: str):
    try:
        return __import__(module)
    except ImportError:
        raise MissingDependencyError(
            f"--broker needs the '{module}' package: pip install 'lipdub[scale]'") from None


def redis_client(url: str):
    """A Redis client that fails fast when the broker is down instead of hanging requests."""
    redis = _need("redis")
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise MissingDependencyError(f"unsupported broker {redact(url)}: use redis://HOST:PORT/DB")
    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=10,
                                health_check_interval=15, decode_responses=True)


def broker_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "the broker is unreachable right now" (not a bug)."""
    import redis
    from kombu.exceptions import OperationalError

    return (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OperationalError,
            ConnectionError, TimeoutError, OSError)


def celery_app(broker: str, timing: Timing | None = None):
    """The Celery app both sides build from the broker URL alone (no shared config file)."""
    _need("celery")
    from celery import Celery

    timing = timing or Timing.from_env()
    app = Celery("lipdub", broker=broker, set_as_current=False)
    app.conf.update(
        # Acknowledge after the job, not on receipt: a worker that dies mid-job leaves the
        # message in Redis to be delivered again; a pool process that dies is re-queued at once.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # One job per free slot: a worker must not hoard jobs other workers could start.
        worker_prefetch_multiplier=1,
        task_default_queue=QUEUE,
        task_serializer="json", accept_content=["json"],
        # Job state travels through our event stream, never a Celery result backend.
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=2,
        # A job keeps running through a broker outage; its events wait in the worker.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        broker_transport_options={"visibility_timeout": timing.visibility_timeout,
                                  "socket_connect_timeout": 2},
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    return app


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def encode_event(kind: str, job_id: str, token: str, worker: str, **fields) -> dict[str, str]:
    """A stream entry: flat string fields; anything structured goes as JSON in 'data'."""
    return {"type": kind, "job": job_id, "token": token, "worker": worker, "ts": repr(time.time()),
            "data": json.dumps(fields)}


def decode_event(fields: dict[str, str]) -> dict:
    out = {k: v for k, v in fields.items() if k != "data"}
    out.update(json.loads(fields.get("data") or "{}"))
    return out
