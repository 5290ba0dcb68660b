"""What every job runner shares: the job interface, and running one job in its own process.

A job is a plain function ``fn(ctx: JobContext) -> dict | None``: it reads ``ctx.inputs`` and
``ctx.options``, reports through ``ctx.progress(stage, fraction)``, writes under ``ctx.work_dir``
and returns a JSON-able result. ``JobQueue`` is what the API needs from a queue; the server's
in-process pool (lipdub.server.queue) and the broker-backed one (lipdub.scale) both implement
it and both run each job with ``child_main`` in a child forked from multiprocessing's fork
server, so a cancel can kill the job's whole process group at once, even inside ffmpeg.
"""

from __future__ import annotations

import ctypes
import fcntl
import multiprocessing
import os
import signal
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from lipdub.errors import LipdubError

#: Minimum seconds between two progress writes of one job (stage changes always go through).
PROGRESS_INTERVAL = 0.25
#: How often a busy worker looks for a cancel request in the store (other processes may set it).
CANCEL_POLL = 0.3


class Cancelled(Exception):
    """Raised from a job's progress callback once the job is cancelled (or the server stops)."""


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


def client_message(error: str, data_dir: Path | str) -> str:
    """A job's error as its client should read it: no server folders, and an upload called
    what it is to the client (the server-made name means nothing to them)."""
    import re

    error = error.replace(f"{data_dir}{os.sep}", "")
    return re.sub(r"uploads/[0-9a-f]{32}\.\w+", "the uploaded file", error)


def preload(functions: dict[str, JobFn]) -> None:
    """Import the job modules once in the fork server, so a job starts in milliseconds.

    Job processes are forked from multiprocessing's fork server (a clean, single-threaded
    process), never from the server itself, whose threads make fork unsafe. Engine modules are
    not preloaded: they may start threads at import, and a fork server must have none. Only
    takes effect before the fork server's first start.
    """
    modules = {"__main__", "lipdub.server.jobs"} | {getattr(fn, "__module__", None) for fn in functions.values()}
    multiprocessing.get_context("forkserver").set_forkserver_preload(
        sorted(m for m in modules if m))


def make_context(spec: dict, progress, cancelled) -> JobContext:
    return JobContext(job_id=spec["job_id"], kind=spec["kind"], inputs=spec["inputs"],
                      options=spec["options"], data_dir=Path(spec["data_dir"]),
                      work_dir=Path(spec["work_dir"]), progress=progress, cancelled=cancelled)


def terminate(proc, grace: float) -> None:
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


def child_main(fn: JobFn, spec: dict, conn) -> None:
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

    ctx = make_context(spec, progress, lambda: False)
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
