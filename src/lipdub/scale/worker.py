"""`lipdub worker`: a Celery worker that runs lipdub jobs from the broker, on any machine.

Each slot (a thread of Celery's "threads" pool) runs one job at a time, the job itself in its own
process, exactly as the server's in-process pool does (lipdub.jobstore.runner): a cancel kills the
job's process group at once, even inside ffmpeg, and a job that crashes its process fails alone.

For one message the worker
1. drops it if it is stale: its token is not the job's current one, or the job was cancelled;
2. takes the job's lease in Redis (so a re-delivered copy never runs beside it) and renews it
   from a heartbeat thread while the job runs;
3. copies the inputs from the storage into a scratch folder (avatars through the per-worker
   cache), runs the job there, and puts its outputs back into the storage;
4. reports started / progress / finished to the owner's event stream, holding on to "finished"
   through a broker outage, and only then gives up the lease.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import socket
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from lipdub.errors import LipdubError
from lipdub.scale import protocol as P
from lipdub.scale.storage import AvatarCache, SharedDirStorage, Storage, check_rel
from lipdub.jobstore.runner import (CANCEL_POLL, PROGRESS_INTERVAL, JobFn, child_main, client_message,
                                    preload, terminate)

log = logging.getLogger("lipdub.scale.worker")

#: How long a worker keeps retrying an important event (or its first look at a job) while the
#: broker is unreachable, before it gives up; the server's lease check then re-runs the job.
BROKER_PATIENCE = 600.0


@dataclass
class WorkerConfig:
    broker: str
    #: The shared storage root (the server's --data-dir, as mounted on this machine).
    storage: Path = field(default_factory=lambda: Path("lipdub-data"))
    #: Local disk for cached avatars and per-job scratch folders.
    cache_dir: Path = field(default_factory=lambda: Path("lipdub-worker"))
    concurrency: int = 1
    cancel_grace: float = 2.0
    loglevel: str = "WARNING"
    #: LRU cap on the cached avatars (bytes; None: no cap). Copies a running job uses stay.
    cache_max_bytes: int | None = None

    def __post_init__(self) -> None:
        self.storage, self.cache_dir = Path(self.storage), Path(self.cache_dir)
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.cache_max_bytes is not None and self.cache_max_bytes < 1:
            raise ValueError("cache_max_bytes must be positive")


class Worker:
    """What one worker process knows: broker and storage clients, avatar cache, held leases."""

    def __init__(self, config: WorkerConfig, jobs: dict[str, JobFn], *,
                 storage: Storage | None = None, timing: P.Timing | None = None):
        self.config = config
        self.jobs = dict(jobs)
        self.timing = timing or P.Timing.from_env()
        self.redis = P.redis_client(config.broker)
        self.errors = P.broker_errors()
        self.storage = storage or SharedDirStorage(config.storage)
        self.cache = AvatarCache(self.storage, config.cache_dir, max_bytes=config.cache_max_bytes)
        self._held: dict[Path, list[Path]] = {}  # job scratch folder -> avatar copies it uses
        self.id = P.worker_id()
        self._leases: dict[str, str] = {}  # job id -> lease value
        self._leases_lock = threading.Lock()
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    # -- heartbeat ------------------------------------------------------------------------------

    def start(self) -> None:
        self._beat = threading.Thread(target=self._heartbeat, name="lipdub-heartbeat", daemon=True)
        self._beat.start()

    def stop(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join(5)
        try:
            self.redis.hdel(P.WORKERS_KEY, self.id)
        except self.errors:
            pass

    def _heartbeat(self) -> None:
        ttl_ms = int(self.timing.lease_ttl * 1000)
        while not self._stop.is_set():
            try:
                with self._leases_lock:
                    held = dict(self._leases)
                pipe = self.redis.pipeline()
                for job_id, value in held.items():
                    # Plain SET, not XX: this also puts a lease back after Redis lost its data.
                    pipe.set(P.lease_key(job_id), value, px=ttl_ms)
                pipe.hset(P.WORKERS_KEY, self.id, json.dumps({
                    "host": socket.gethostname(), "pid": os.getpid(), "ts": time.time(),
                    "concurrency": self.config.concurrency, "running": len(held),
                    "storage": self.storage.describe(), "avatar_fetches": self.cache.fetches}))
                pipe.execute()
            except self.errors as exc:
                log.warning("heartbeat: broker unreachable (%s)", exc)
            self._stop.wait(self.timing.heartbeat)

    # -- broker helpers -------------------------------------------------------------------------

    def _patiently(self, what: str, fn):
        deadline = time.monotonic() + BROKER_PATIENCE
        while True:
            try:
                return fn()
            except self.errors as exc:
                if time.monotonic() > deadline:
                    raise
                log.warning("%s: broker unreachable (%s); retrying", what, exc)
                time.sleep(1.0)

    def _emit(self, msg: dict, kind: str, *, important: bool = True, **fields) -> None:
        entry = P.encode_event(kind, msg["job_id"], msg["token"], self.id, **fields)

        def send():
            self.redis.xadd(msg["reply"], entry, maxlen=P.STREAM_MAXLEN, approximate=True)
        if important:
            self._patiently(f"job {msg['job_id']}: {kind}", send)
        else:
            try:
                send()
            except self.errors:
                pass  # a lost progress report only delays the bar

    # -- one job --------------------------------------------------------------------------------

    def handle(self, msg: dict) -> str:
        """Run one message; returns what became of it (for logs and tests)."""
        job_id, token = msg["job_id"], msg["token"]
        current = self._patiently(f"job {job_id}", lambda: self.redis.hgetall(P.job_key(job_id)))
        if current.get("token") != token or current.get("cancel") == "1":
            log.info("job %s: stale or cancelled message dropped", job_id)
            return "dropped"
        lease = f"{self.id}|{token}"
        if not self._patiently(f"job {job_id}", lambda: self.redis.set(
                P.lease_key(job_id), lease, nx=True, px=int(self.timing.lease_ttl * 1000))):
            log.info("job %s: already running on another worker; copy dropped", job_id)
            return "dropped"
        with self._leases_lock:
            self._leases[job_id] = lease
        root = self.config.cache_dir / "run" / f"{job_id}-{token[:8]}"
        try:
            self._emit(msg, "started")
            state, error, result = self._run(msg, root)
            if error:  # this worker's scratch folder means nothing to a client
                error = client_message(error, root)
            if state != "superseded":
                self._emit(msg, "finished", state=state, error=error, result=result)
            log.info("job %s %s%s", job_id, state, f": {error}" if error else "")
            return state
        finally:
            with self._leases_lock:
                self._leases.pop(job_id, None)
            try:  # drop the lease only if it is still ours
                if self.redis.get(P.lease_key(job_id)) == lease:
                    self.redis.delete(P.lease_key(job_id))
            except self.errors:
                pass  # it expires by itself
            shutil.rmtree(root, ignore_errors=True)
            for copy in self._held.pop(root, []):
                self.cache.release(copy)

    def _run(self, msg: dict, root: Path) -> tuple[str, str | None, dict | None]:
        fn = self.jobs.get(msg["kind"])
        if fn is None:
            return "failed", f"this worker cannot run '{msg['kind']}' jobs", None
        try:
            spec = self._stage(msg, root)
            state, error, result = self._run_process(fn, spec, msg)
            if state == "done":
                self._unstage(msg, root)
            return state, error, result
        except LipdubError as exc:
            return "failed", str(exc), None
        except Exception as exc:  # a bug in the worker: fail the job, keep the worker
            log.error("job %s: worker error\n%s", msg["job_id"], traceback.format_exc())
            return "failed", f"internal error in the worker: {type(exc).__name__}: {exc}", None

    def _stage(self, msg: dict, root: Path) -> dict:
        """Copy the job's inputs into ``root``, laid out as in the storage."""
        io = msg.get("io") or {}
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        for name, rel in msg["inputs"].items():
            if not isinstance(rel, str):
                continue
            local = root.joinpath(*check_rel(rel).parts)
            local.parent.mkdir(parents=True, exist_ok=True)
            if name in io.get("outputs", ()):
                continue  # the job writes it
            if name in io.get("avatars", ()):
                copy = self.cache.get(rel)
                self._held.setdefault(root, []).append(copy)
                local.symlink_to(copy.resolve(), target_is_directory=True)
            else:
                try:
                    self.storage.fetch(rel, local)
                except LipdubError as exc:
                    raise type(exc)(f"this worker cannot read the job's {name}: {exc}") from None
        work_dir = root / "jobs" / msg["job_id"]
        work_dir.mkdir(parents=True, exist_ok=True)
        return {"job_id": msg["job_id"], "kind": msg["kind"], "inputs": msg["inputs"],
                "options": msg.get("options", {}), "data_dir": str(root), "work_dir": str(work_dir)}

    def _unstage(self, msg: dict, root: Path) -> None:
        """Put the job's outputs (declared output folders, and its work folder) into the storage."""
        for name in (msg.get("io") or {}).get("outputs", ()):
            rel = msg["inputs"].get(name)
            if rel and (root / rel).exists():
                self.storage.put(root / rel, rel)
        work_dir = root / "jobs" / msg["job_id"]
        if any(work_dir.iterdir()):
            self.storage.put(work_dir, f"jobs/{msg['job_id']}")

    def _run_process(self, fn: JobFn, spec: dict, msg: dict) -> tuple[str, str | None, dict | None]:
        key, token = P.job_key(msg["job_id"]), msg["token"]
        mp = multiprocessing.get_context("forkserver")
        recv, send = mp.Pipe(duplex=False)
        proc = mp.Process(target=child_main, args=(fn, spec, send), name=f"lipdub-job-{msg['job_id'][:8]}")
        proc.start()
        send.close()
        outcome = None
        next_poll = last_sent = 0.0
        last_stage = None
        try:
            while outcome is None:
                if recv.poll(0.1):
                    try:
                        message = recv.recv()
                    except (EOFError, OSError):
                        proc.join(5)
                        outcome = ("failed", f"the job's process died (exit code {proc.exitcode})", None)
                        continue
                    if message[0] == "progress":
                        now = time.monotonic()
                        stage, fraction = message[1], message[2]
                        if stage != last_stage or fraction >= 1.0 or now - last_sent >= PROGRESS_INTERVAL:
                            last_sent, last_stage = now, stage
                            self._emit(msg, "progress", important=False, stage=stage, fraction=fraction)
                    else:
                        outcome = tuple(message[1:])
                    continue
                if time.monotonic() >= next_poll:
                    next_poll = time.monotonic() + CANCEL_POLL
                    try:
                        now_token, cancel = self.redis.hmget(key, "token", "cancel")
                    except self.errors:
                        now_token, cancel = token, None  # keep going through a broker outage
                    if cancel == "1":
                        outcome = ("cancelled", None, None)
                    elif now_token is not None and now_token != token:
                        # The server gave this attempt up (our lease lapsed) and sent a new one.
                        outcome = ("superseded", None, None)
                if outcome is None and not proc.is_alive() and not recv.poll():
                    outcome = ("failed", f"the job's process died (exit code {proc.exitcode})", None)
        finally:
            terminate(proc, self.config.cancel_grace)
            recv.close()
        return outcome


_worker: Worker | None = None


def _run_task(message: dict) -> str:
    assert _worker is not None, "lipdub task outside `lipdub worker`"
    return _worker.handle(message)


def run_worker(config: WorkerConfig, jobs: dict[str, JobFn] | None = None, *,
               storage: Storage | None = None) -> None:
    """Run a worker until interrupted (what `lipdub worker` calls)."""
    global _worker
    if jobs is None:
        from lipdub.server.jobs import default_jobs

        jobs = default_jobs()
    logging.basicConfig(level=getattr(logging, config.loglevel.upper(), logging.WARNING),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    timing = P.Timing.from_env()
    app = P.celery_app(config.broker, timing)
    app.task(name=P.TASK, acks_late=True, reject_on_worker_lost=True)(_run_task)
    preload(jobs)  # job modules imported once in the fork server; jobs start in milliseconds
    _worker = Worker(config, jobs, storage=storage, timing=timing)
    if storage is None and not config.storage.is_dir():
        log.warning("storage folder %s does not exist: jobs will fail until it is mounted",
                    config.storage)
    print(f"lipdub worker {_worker.id}: {config.concurrency} slot(s), broker "
          f"{P.redact(config.broker)}, {_worker.storage.describe()}, cache {config.cache_dir}",
          flush=True)
    _worker.start()
    argv = ["--quiet", "worker", "--pool=threads", f"--concurrency={config.concurrency}",
            f"--hostname=lipdub-{os.getpid()}@{socket.gethostname()}", f"--queues={P.QUEUE}",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
            f"--loglevel={config.loglevel.upper()}"]
    try:
        app.worker_main(argv)
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise
    finally:
        _worker.stop()
