"""The server's own job queue: a pool of worker threads inside the server process.

``LocalQueue`` implements ``lipdub.jobstore.JobQueue`` on the SQLite store: it keeps nothing in
memory that the store does not also hold, so the API never needs to know where jobs run (the
broker-backed queue in lipdub.scale implements the same protocol). With ``isolation="process"``
(the default) each job runs in a fresh child process (forked from multiprocessing's fork
server): the server stays responsive while a job burns CPU, and cancelling terminates the
child's process group at once, even inside a long ffmpeg call. With ``isolation="thread"`` the
job runs in the worker thread and stops at its next progress report.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sqlite3
import threading
import time
import traceback
from pathlib import Path
from typing import Callable

from lipdub.errors import LipdubError
from lipdub.jobstore.runner import (CANCEL_POLL, PROGRESS_INTERVAL, Cancelled, JobContext, JobFn,  # noqa: F401
                                    JobQueue, child_main, client_message, lock_data_dir,
                                    make_context, preload, terminate)
from lipdub.jobstore.store import Store

log = logging.getLogger("lipdub.server")

#: How often an idle worker looks for new jobs when nobody woke it.
IDLE_POLL = 0.5


class _Shutdown(Cancelled):
    """The server is stopping: the job goes back to the queue instead of being cancelled."""


class LocalQueue:
    def __init__(self, store: Store, data_dir: Path, functions: dict[str, JobFn], *,
                 workers: int = 1, isolation: str = "process", max_attempts: int = 2,
                 cancel_grace: float = 2.0, shutdown_grace: float = 0.0):
        self.store = store
        self.data_dir = Path(data_dir)
        self.functions = dict(functions)
        self.workers = workers
        self.isolation = isolation
        self.max_attempts = max_attempts
        self.cancel_grace = cancel_grace
        self.shutdown_grace = shutdown_grace
        self._wake = threading.Event()
        self._draining = threading.Event()  # take no new job
        self._stopping = threading.Event()  # interrupt running jobs (they are re-queued)
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
            preload(self.functions)
        self._stopping.clear()
        self._draining.clear()
        for i in range(self.workers):
            t = threading.Thread(target=self._worker, name=f"lipdub-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop workers: take no new job, give running ones ``shutdown_grace`` seconds to end,
        then interrupt the rest, which go back to the queue for next time."""
        self._draining.set()
        self._wake.set()
        deadline = time.monotonic() + self.shutdown_grace
        while time.monotonic() < deadline:
            with self._busy_lock:
                if not self._busy:
                    break
            time.sleep(0.1)
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
                "alive": alive, "busy": busy, "draining": self._draining.is_set(),
                "running": not self._draining.is_set() and alive > 0}

    # -- workers --------------------------------------------------------------------------------

    def _worker(self) -> None:
        name = f"{os.getpid()}:{threading.current_thread().name}"
        while not self._draining.is_set():
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
                self._durably(job["id"], self.store.finish, job["id"], "failed",
                              error="internal error in the job worker")
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
        if error:
            error = client_message(error, self.data_dir)
        if state == "requeue":
            self._durably(job_id, self.store.requeue, job_id, "re-queued: the server stopped")
        else:
            self._durably(job_id, self.store.finish, job_id, state, error=error, result=result)
        log.info("job %s %s%s", job_id, state, f": {error}" if error else "")

    def _progress_writer(self, job_id: str) -> Callable[[str, float], None]:
        last = {"t": 0.0, "stage": None}

        def write(stage: str, fraction: float) -> None:
            now = time.monotonic()
            if stage != last["stage"] or fraction >= 1.0 or now - last["t"] >= PROGRESS_INTERVAL:
                last.update(t=now, stage=stage)
                try:
                    self.store.set_progress(job_id, stage, fraction)
                except Exception as exc:  # e.g. disk full: a lost progress report only delays the bar
                    log.warning("job %s: progress not recorded (%s)", job_id, exc)
        return write

    def _durably(self, job_id: str, write, *args, **kwargs) -> None:
        """Record a job's outcome, retrying while the database cannot be written (disk full,
        locked), so the job's row is never left wrong. If the server stops first, the row
        stays 'running' and the next start re-queues the job: it is never lost. Any other error
        (an unstorable result, a closed store) never clears: it is raised to the worker loop,
        which fails the job."""
        failures = 0
        while True:
            try:
                write(*args, **kwargs)
                return
            except (sqlite3.OperationalError, OSError) as exc:  # full, locked: may clear
                failures += 1
                if failures == 1:
                    log.error("job %s: cannot record its outcome (%s); retrying", job_id, exc)
                if self._stopping.is_set() and failures >= 3:
                    log.error("job %s: left for recovery at the next start", job_id)
                    return
                time.sleep(min(5.0, 0.5 * failures))

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

        ctx = make_context(spec, progress, cancelled)
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
        proc = mp.Process(target=child_main, args=(fn, spec, send), name=f"lipdub-job-{job_id[:8]}")
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
            terminate(proc, self.cancel_grace)
            recv.close()
        return outcome
