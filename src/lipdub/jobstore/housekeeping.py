"""Keeping a data folder healthy for months: free disk, retention, and a cap on its size.

A ``Janitor`` sweeps the data folder now and then (and when asked): jobs that ended more than
``keep_days`` ago lose their files (result, uploads) and their row; past ``max_bytes`` the
longest-finished jobs go first, until the folder fits. Queued and running jobs are never
touched, and neither are avatars: they are the user's to delete. A preparation job's row stays
while its avatar exists (the avatar's state is read from it); only its uploaded source goes.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import threading
import time
from pathlib import Path

from lipdub.jobstore.store import Store

log = logging.getLogger("lipdub.jobstore")

DAY = 86400.0
#: Errors that mean "the disk (or the quota) is full".
FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
#: Half-written uploads older than this are leftovers of a crash.
STALE_PART_SECONDS = 3600.0


def disk_free(path: Path) -> dict:
    """Free and total bytes of the file system holding ``path``."""
    usage = shutil.disk_usage(path)
    return {"free_bytes": usage.free, "total_bytes": usage.total,
            "free_fraction": round(usage.free / usage.total, 4) if usage.total else 0.0}


def is_disk_full(exc: BaseException) -> bool:
    """Whether an OSError or SQLite error says the disk is full."""
    if isinstance(exc, OSError) and exc.errno in FULL_ERRNOS:
        return True
    text = str(exc).lower()
    return "database or disk is full" in text or "no space left" in text


def tree_bytes(path: Path) -> int:
    """Bytes of the files under ``path`` (a file: its size; missing: 0). Symlinks are not followed."""
    try:
        if path.is_symlink() or path.is_file():
            return path.lstat().st_size
    except OSError:
        return 0
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def _remove(path: Path) -> int:
    size = tree_bytes(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
    return size


class Janitor:
    """Retention and size cap for one data folder (see the module docstring)."""

    def __init__(self, store: Store, data_dir: Path, *, keep_days: float | None = None,
                 max_bytes: int | None = None, interval: float = 600.0):
        if keep_days is not None and keep_days <= 0:
            raise ValueError("keep_days must be positive")
        if max_bytes is not None and max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.store = store
        self.data_dir = Path(data_dir)
        self.keep_days = keep_days
        self.max_bytes = max_bytes
        self.interval = interval
        self.last: dict = {}
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.keep_days is not None or self.max_bytes is not None

    # -- one sweep ------------------------------------------------------------------------------

    def _files_of(self, job: dict) -> list[Path]:
        """A job's own files: its work folder and the uploads it was given."""
        paths = [self.data_dir / "jobs" / job["id"]]
        for rel in ((job.get("params") or {}).get("inputs") or {}).values():
            if isinstance(rel, str) and rel.startswith("uploads/") and ".." not in rel:
                paths.append(self.data_dir / rel)
        return paths

    def _kept_for_avatar(self, job: dict) -> bool:
        """A prepare job whose files are gone and whose row stays for its avatar."""
        return (not any(p.exists() or p.is_symlink() for p in self._files_of(job))
                and self.store.avatar_of_job(job["id"]) is not None)

    def _expire(self, job: dict) -> int:
        """Delete an ended job's files, and its row unless an avatar still depends on it."""
        freed = sum(_remove(p) for p in self._files_of(job) if p.exists() or p.is_symlink())
        if self.store.avatar_of_job(job["id"]) is None:
            self.store.delete_job(job["id"])
        return freed

    def sweep(self, now: float | None = None) -> dict:
        """One pass: retention, then the size cap. Returns what it did (also kept in ``last``)."""
        with self._lock:
            now = time.time() if now is None else now
            expired = freed = 0
            done: set[str] = set()
            self._drop_stale_parts(now)
            if self.keep_days is not None:
                for job in self.store.finished_jobs(before=now - self.keep_days * DAY):
                    if self._kept_for_avatar(job):
                        continue  # expired before: only the row an avatar needs is left
                    freed += self._expire(job)
                    done.add(job["id"])
                    expired += 1
            size = None
            if self.max_bytes is not None:
                size = tree_bytes(self.data_dir)
                for job in (self.store.finished_jobs() if size > self.max_bytes else ()):
                    if size <= self.max_bytes:
                        break
                    if job["id"] in done or not any(p.exists() for p in self._files_of(job)):
                        continue  # nothing of it left on disk (a prepared avatar's row)
                    got = self._expire(job)
                    size -= got
                    freed += got
                    expired += 1
                if size > self.max_bytes:
                    log.warning("data folder %s holds %d MB, over its %d MB cap, with no finished "
                                "job left to remove (avatars and running jobs are kept)",
                                self.data_dir, size >> 20, self.max_bytes >> 20)
            self.last = {"time": now, "expired_jobs": expired, "freed_bytes": freed,
                         "data_bytes": size}
            if expired:
                log.info("housekeeping: removed %d ended job(s), %d MB", expired, freed >> 20)
            return self.last

    def _drop_stale_parts(self, now: float) -> None:
        uploads = self.data_dir / "uploads"
        if not uploads.is_dir():
            return
        for part in uploads.glob("*.part"):
            try:
                if now - part.stat().st_mtime > STALE_PART_SECONDS:
                    part.unlink()
            except OSError:
                pass

    # -- in the background ----------------------------------------------------------------------

    def start(self) -> None:
        if not self.enabled or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="lipdub-janitor", daemon=True)
        self._thread.start()

    def poke(self) -> None:
        """Sweep soon (the disk filled up, say) instead of at the next interval."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sweep()
            except Exception:  # a failed sweep must not stop the next ones
                log.exception("housekeeping sweep failed")
            self._wake.wait(self.interval)
            self._wake.clear()
