"""The job queue: a small interface, and a worker pool inside the server process.

A job is a plain function ``fn(ctx: JobContext) -> dict | None``: it reads ``ctx.inputs`` and
``ctx.options``, reports through ``ctx.progress(stage, fraction)``, writes under ``ctx.work_dir``
and returns a JSON-able result. The queue keeps nothing in memory that the SQLite store does not
also hold, so the API never needs to know where jobs run (a later Celery/Redis queue implements
the same ``JobQueue`` protocol).

``LocalQueue`` runs N worker threads. With ``isolation="process"`` (the default) each job runs
in a fresh child process (forked from multiprocessing's fork server): the server stays responsive while a job burns CPU, and cancelling
terminates the child's process group at once, even inside a long ffmpeg call. With
``isolation="thread"`` the job runs in the worker thread and stops at its next progress report.
"""

from __future__ import annotations

import ctypes
import fcntl
import logging
import multiprocessing
import os
import signal
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from lipdub.errors import LipdubError
from lipdub.server.store import Store

log = logging.getLogger("lipdub.server")

#: Minimum seconds between two progress writes of one job (stage changes always go through).
PROGRESS_INTERVAL = 0.25
#: How often a busy worker looks for a cancel request in the store (other processes may set it).
CANCEL_POLL = 0.3
#: How often an idle worker looks for new jobs when nobody woke it.
IDLE_POLL = 0.5


class Cancelled(Exception):
    """Raised from a job's progress callback once the job is cancelled (or the server stops)."""


class _Shutdown(Cancelled):
    """The server is stopping: the job goes back to the queue instead of being cancelled."""


@dataclass
class JobContext:
    job_id: str
    kind: str
    inputs: dict[str, Any]
    options: dict[str, Any]
    data_dir: Path
    work_dir: Path
    progress: Callable[[str, float], None] = field(repr=False)
    cancelled: Callable[[], bool] = field(repr=False)

    def path(self, rel: str) -> Path:
        """An input path stored relative to the data dir, made absolute."""
        return self.data_dir / rel


JobFn = Callable[[JobContext], "dict | None"]


class JobQueue(Protocol):
    """What the API needs from a queue. Implementations record everything in the Store."""

    def submit(self, kind: str, inputs: dict, options: dict, *, job_id: str | None = None,
               avatar_id: str | None = None, after: str | None = None) -> dict: ...

    def cancel(self, job_id: str) -> dict | None: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def status(self) -> dict: ...


def lock_data_dir(data_dir: Path):
    """An exclusive lock on ``data_dir`` held by the returned open file (keep it open): one job
    queue per data dir. The kernel releases it when the process dies, however it dies."""
    data_dir.mkdir(parents=True, exist_ok=True)
    lock_file = open(data_dir / "queue.lock", "w")
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock_file.close()
        raise LipdubError(f"another lipdub server is using {data_dir}") from None
    return lock_file


class LocalQueue:
    def __init__(self, store: Store, data_dir: Path, functions: dict[str, JobFn], *,
                 workers: int = 1, isolation: str = "process", max_attempts: int = 2,
                 cancel_grace: float = 2.0):
        self.store = store
        self.data_dir = Path(data_dir)
        self.functions = dict(functions)
        self.workers = workers
        self.isolation = isolation
        self.max_attempts = max_attempts
        self.cancel_grace = cancel_grace
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._busy: dict[str, str] = {}  # worker name -> job id
        self._busy_lock = threading.Lock()
        self._lock_file = None

    # -- JobQueue -------------------------------------------------------------------------------

    def submit(self, kind, inputs, options, *, job_id=None, avatar_id=None, after=None):
        job = self.store.add_job(kind, {"inputs": inputs, "options": options}, job_id=job_id,
                                 avatar_id=avatar_id, after=after)
        self._wake.set()
        return job

    def cancel(self, job_id):
        job = self.store.request_cancel(job_id)
        self._wake.set()  # a cancelled dependency may fail waiting jobs; let a worker look
        return job

    def start(self) -> None:
        # One LocalQueue per data dir: recovery below assumes no other worker is running.
        # flock is released by the kernel when this process dies, however it dies.
        self._lock_file = lock_data_dir(self.data_dir)
        requeued, failed = self.store.recover(self.max_attempts)
        if requeued or failed:
            log.warning("after restart: %d interrupted job(s) re-queued, %d failed", requeued, failed)
        if self.isolation == "process":
            _preload(self.functions)
        self._stopping.clear()
        for i in range(self.workers):
            t = threading.Thread(target=self._worker, name=f"lipdub-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop workers; running jobs are interrupted and go back to the queue for next time."""
        self._stopping.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout)
        self._threads.clear()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def status(self) -> dict:
        with self._busy_lock:
            busy = len(self._busy)
        alive = sum(t.is_alive() for t in self._threads)
        return {"backend": "local", "isolation": self.isolation, "workers": self.workers,
                "alive": alive, "busy": busy, "running": not self._stopping.is_set() and alive > 0}

    # -- workers --------------------------------------------------------------------------------

    def _worker(self) -> None:
        name = f"{os.getpid()}:{threading.current_thread().name}"
        while not self._stopping.is_set():
            try:
                job = self.store.claim(name)
            except Exception:  # a locked or broken database must not kill the worker
                log.exception("could not claim a job")
                job = None
            if job is None:
                self._wake.wait(IDLE_POLL)
                self._wake.clear()
                continue
            with self._busy_lock:
                self._busy[name] = job["id"]
            try:
                self._run(job)
            except Exception:
                log.exception("job %s: worker error", job["id"])
                self.store.finish(job["id"], "failed", error="internal error in the job worker")
            finally:
                with self._busy_lock:
                    self._busy.pop(name, None)
                self._wake.set()  # jobs waiting on this one may now run

    def _context_spec(self, job: dict) -> dict:
        work_dir = self.data_dir / "jobs" / job["id"]
        work_dir.mkdir(parents=True, exist_ok=True)
        params = job["params"] or {}
        return {"job_id": job["id"], "kind": job["kind"], "inputs": params.get("inputs", {}),
                "options": params.get("options", {}), "data_dir": str(self.data_dir),
                "work_dir": str(work_dir)}

    def _run(self, job: dict) -> None:
        job_id = job["id"]
        fn = self.functions.get(job["kind"])
        if fn is None:
            self.store.finish(job_id, "failed", error=f"this server cannot run '{job['kind']}' jobs")
            return
        spec = self._context_spec(job)
        log.info("job %s (%s) started", job_id, job["kind"])
        runner = self._run_in_process if self.isolation == "process" else self._run_in_thread
        state, error, result = runner(fn, spec)
        if state == "requeue":
            self.store.requeue(job_id, "re-queued: the server stopped")
        else:
            self.store.finish(job_id, state, error=error, result=result)
        log.info("job %s %s%s", job_id, state, f": {error}" if error else "")

    def _progress_writer(self, job_id: str) -> Callable[[str, float], None]:
        last = {"t": 0.0, "stage": None}

        def write(stage: str, fraction: float) -> None:
            now = time.monotonic()
            if stage != last["stage"] or fraction >= 1.0 or now - last["t"] >= PROGRESS_INTERVAL:
                last.update(t=now, stage=stage)
                self.store.set_progress(job_id, stage, fraction)
        return write

    def _run_in_thread(self, fn: JobFn, spec: dict) -> tuple[str, str | None, dict | None]:
        job_id = spec["job_id"]
        write = self._progress_writer(job_id)
        last_poll = {"t": 0.0, "cancelled": False}

        def cancelled() -> bool:
            if self._stopping.is_set():
                return True
            now = time.monotonic()
            if not last_poll["cancelled"] and now - last_poll["t"] >= CANCEL_POLL:
                last_poll.update(t=now, cancelled=self.store.cancel_requested(job_id))
            return last_poll["cancelled"]

        def progress(stage: str, fraction: float) -> None:
            if cancelled():
                raise _Shutdown() if self._stopping.is_set() else Cancelled()
            write(stage, fraction)

        ctx = _make_context(spec, progress, cancelled)
        try:
            return "done", None, fn(ctx)
        except _Shutdown:
            return "requeue", None, None
        except Cancelled:
            return "cancelled", None, None
        except LipdubError as exc:
            return "failed", str(exc), None
        except Exception as exc:
            log.error("job %s crashed:\n%s", job_id, traceback.format_exc())
            return "failed", f"internal error: {type(exc).__name__}: {exc}", None

    def _run_in_process(self, fn: JobFn, spec: dict) -> tuple[str, str | None, dict | None]:
        job_id = spec["job_id"]
        write = self._progress_writer(job_id)
        mp = multiprocessing.get_context("forkserver")
        recv, send = mp.Pipe(duplex=False)
        proc = mp.Process(target=_child_main, args=(fn, spec, send), name=f"lipdub-job-{job_id[:8]}")
        proc.start()
        send.close()
        outcome: tuple[str, str | None, dict | None] | None = None
        next_poll = 0.0
        try:
            while outcome is None:
                if recv.poll(0.1):
                    try:
                        msg = recv.recv()
                    except (EOFError, OSError):
                        msg = None
                    if msg is None:
                        proc.join(5)
                        outcome = ("failed", f"the job's process died (exit code {proc.exitcode})", None)
                    elif msg[0] == "progress":
                        write(msg[1], msg[2])
                    else:
                        outcome = msg[1:]
                    continue
                if self._stopping.is_set():
                    outcome = ("requeue", None, None)
                elif time.monotonic() >= next_poll:
                    next_poll = time.monotonic() + CANCEL_POLL
                    if self.store.cancel_requested(job_id):
                        outcome = ("cancelled", None, None)
                if outcome is None and not proc.is_alive() and not recv.poll():
                    outcome = ("failed", f"the job's process died (exit code {proc.exitcode})", None)
        finally:
            _terminate(proc, self.cancel_grace)
            recv.close()
        return outcome


def _preload(functions: dict[str, JobFn]) -> None:
    """Import the job modules once in the fork server, so a job starts in milliseconds.

    Job processes are forked from multiprocessing's fork server (a clean, single-threaded
    process), never from the server itself, whose threads make fork unsafe. Engine modules are
    not preloaded: they may start threads at import, and a fork server must have none. Only
    takes effect before the fork server's first start.
    """
    modules = {"__main__", "lipdub.server.jobs"} | {getattr(fn, "__module__", None) for fn in functions.values()}
    multiprocessing.get_context("forkserver").set_forkserver_preload(
        sorted(m for m in modules if m))


def _make_context(spec: dict, progress, cancelled) -> JobContext:
    return JobContext(job_id=spec["job_id"], kind=spec["kind"], inputs=spec["inputs"],
                      options=spec["options"], data_dir=Path(spec["data_dir"]),
                      work_dir=Path(spec["work_dir"]), progress=progress, cancelled=cancelled)


def _terminate(proc, grace: float) -> None:
    """Stop a job's child process and everything it started (its own process group)."""
    if proc.is_alive():
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                proc.terminate() if sig == signal.SIGTERM else proc.kill()
            proc.join(wait)
            if not proc.is_alive():
                break
    else:
        proc.join(1)
    try:  # grandchildren (ffmpeg...) may outlive a child that exited by itself
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _die_with_parent(parent_pid: int) -> None:
    """Linux: get SIGKILL when the server dies, so a crashed server leaves no job running."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _child_main(fn: JobFn, spec: dict, conn) -> None:
    parent = os.getppid()
    os.setpgrp()  # own process group: cancel kills ffmpeg & co. along with the job
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C on the server: the server decides
    last = {"t": 0.0, "stage": None}

    def send(message: tuple) -> None:
        try:
            conn.send(message)
        except OSError:  # the worker stopped listening: it is cancelling or shutting down
            os._exit(1)

    def progress(stage: str, fraction: float) -> None:
        if os.getppid() != parent:
            os._exit(1)
        now = time.monotonic()
        if stage != last["stage"] or fraction >= 1.0 or now - last["t"] >= PROGRESS_INTERVAL / 2:
            last.update(t=now, stage=stage)
            send(("progress", str(stage), float(fraction)))

    ctx = _make_context(spec, progress, lambda: False)
    try:
        result = fn(ctx)
        send(("done", "done", None, result))
    except LipdubError as exc:
        send(("done", "failed", str(exc), None))
    except BaseException as exc:  # noqa: BLE001 - report everything to the server, then exit
        traceback.print_exc()
        send(("done", "failed", f"internal error: {type(exc).__name__}: {exc}", None))
    finally:
        conn.close()
