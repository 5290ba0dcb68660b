"""Where job inputs and results live so every machine can reach them, and the worker's avatar cache.

``Storage`` is the small interface workers use: fetch a file or folder to local disk, put one
back, and ask for a cheap version stamp. ``SharedDirStorage`` implements it on a folder every
machine mounts (NFS, SMB, a bind mount): the server's ``--data-dir`` itself, so uploads and
results need no copying on the server side. An object store (S3...) would implement the same four
methods; see "what's left" in the README.

Paths are always relative ("uploads/x.wav", "avatars/<id>"): each machine may mount the shared
folder somewhere else.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import threading
import uuid
from pathlib import Path, PurePosixPath
from typing import Protocol

from lipdub.errors import InputError, OutputError


class StorageMissing(InputError):
    """A path a job needs is not in the storage (or this machine cannot read it)."""


class Storage(Protocol):
    def describe(self) -> str: ...

    def fetch(self, rel: str, dest: Path) -> None:
        """Copy file or folder ``rel`` to the local path ``dest`` (which must not exist)."""

    def put(self, src: Path, rel: str) -> None:
        """Store local file or folder ``src`` as ``rel``, replacing what was there, atomically."""

    def version(self, rel: str) -> str | None:
        """A stamp that changes whenever ``rel`` changes; None when it is absent."""


def check_rel(rel: str) -> PurePosixPath:
    """Refuse absolute paths and '..': a message must never name files outside the storage."""
    p = PurePosixPath(rel)
    if not rel or p.is_absolute() or ".." in p.parts:
        raise InputError(f"invalid storage path {rel!r}")
    return p


class SharedDirStorage:
    def __init__(self, root: Path | str):
        self.root = Path(root).resolve()

    def describe(self) -> str:
        return f"shared folder {self.root}"

    def _path(self, rel: str) -> Path:
        return self.root.joinpath(*check_rel(rel).parts)

    def fetch(self, rel: str, dest: Path) -> None:
        src = self._path(rel)
        try:
            if src.is_dir():
                shutil.copytree(src, dest, symlinks=False)
            else:
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest)
        except FileNotFoundError:
            raise StorageMissing(f"{rel} is not in {self.describe()}") from None
        except OSError as exc:
            raise StorageMissing(f"cannot read {rel} from {self.describe()}: {exc.strerror or exc}") from None

    def put(self, src: Path, rel: str) -> None:
        dest = self._path(rel)
        tmp = dest.with_name(f".{dest.name}.partial-{uuid.uuid4().hex[:8]}")
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, tmp, symlinks=False)
                old = None
                if dest.exists():  # folders cannot be replaced in one rename: move the old aside
                    old = dest.with_name(f".{dest.name}.old-{uuid.uuid4().hex[:8]}")
                    os.replace(dest, old)
                os.replace(tmp, dest)
                if old is not None:
                    shutil.rmtree(old, ignore_errors=True)
            else:
                shutil.copy2(src, tmp)
                os.replace(tmp, dest)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
            raise OutputError(f"cannot write {rel} to {self.describe()}: {exc.strerror or exc}") from None

    def version(self, rel: str) -> str | None:
        # Names, sizes and modification times: a stat walk, no file is read.
        top = self._path(rel)
        h = hashlib.sha1()
        try:
            if not top.exists():
                return None
            if top.is_file():
                st = top.stat()
                h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
                return h.hexdigest()
            for dirpath, dirnames, filenames in os.walk(top, onerror=_raise):
                dirnames.sort()
                for name in sorted(filenames):
                    p = Path(dirpath) / name
                    st = p.stat()
                    h.update(f"{p.relative_to(top)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
        except OSError as exc:
            raise StorageMissing(f"cannot read {rel} from {self.describe()}: {exc.strerror or exc}") from None
        return h.hexdigest()


def _raise(exc: OSError) -> None:
    raise exc


class AvatarCache:
    """Avatars copied once to this worker's local disk and reused by every later job.

    A copy is keyed by the avatar's path and its version stamp, so an avatar changed in the
    storage (re-prepared) is fetched again. A file lock makes several worker processes sharing
    one cache folder fetch each avatar once between them. With ``max_bytes`` the cache is an
    LRU: after a fetch, the least recently used copies go until it fits, except those a job of
    this process holds (``get`` ... ``release``), since a running job reads frames lazily.
    """

    def __init__(self, storage: Storage, root: Path, max_bytes: int | None = None):
        self.storage = storage
        self.root = Path(root) / "avatars"
        self.max_bytes = max_bytes
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._in_use: dict[Path, int] = {}
        self.fetches = 0  # how many times this process copied an avatar (tests, status)
        self.evictions = 0

    def get(self, rel: str) -> Path:
        try:
            stamp = self.storage.version(rel)
        except StorageMissing as exc:
            raise StorageMissing(f"this worker cannot read the avatar {rel}: {exc}") from None
        if stamp is None:
            raise StorageMissing(
                f"this worker cannot read the avatar {rel}: it is not in {self.storage.describe()} "
                "(was it deleted, or does this worker's --storage point to another folder?)")
        key = hashlib.sha1(rel.encode()).hexdigest()[:16]
        path = self.root / f"{key}-{stamp[:16]}"
        with self._locks_guard:  # held from here: eviction must not take it under our feet
            self._in_use[path] = self._in_use.get(path, 0) + 1
        try:
            self._fetch(rel, key, path)
        except BaseException:
            self.release(path)
            raise
        try:
            os.utime(path)  # the LRU order is the copies' modification times
        except OSError:
            pass
        self._evict()
        return path

    def release(self, path: Path) -> None:
        """A job is done with a copy ``get`` gave it: it may be evicted again."""
        with self._locks_guard:
            left = self._in_use.get(path, 0) - 1
            if left > 0:
                self._in_use[path] = left
            else:
                self._in_use.pop(path, None)

    def _evict(self) -> None:
        if self.max_bytes is None or not self.root.is_dir():
            return
        from lipdub.jobstore.housekeeping import tree_bytes

        copies = []
        for p in self.root.iterdir():
            if p.is_dir() and not p.name.startswith("."):
                try:
                    copies.append((p.stat().st_mtime, p, tree_bytes(p)))
                except OSError:
                    pass
        total = sum(size for _, _, size in copies)
        for _, p, size in sorted(copies, key=lambda c: c[0]):
            if total <= self.max_bytes:
                break
            with self._locks_guard:
                if p in self._in_use:
                    continue
                # Renamed first: a half-deleted copy must never look like a usable one.
                trash = self.root / f".evicted-{uuid.uuid4().hex[:8]}"
                try:
                    os.replace(p, trash)
                except OSError:
                    continue
            shutil.rmtree(trash, ignore_errors=True)
            total -= size
            self.evictions += 1

    def _fetch(self, rel: str, key: str, path: Path) -> None:
        if path.is_dir():
            return
        with self._thread_lock(key):
            self.root.mkdir(parents=True, exist_ok=True)
            with open(self.root / f".{key}.lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                if not path.is_dir():
                    tmp = self.root / f".{key}.partial-{uuid.uuid4().hex[:8]}"
                    try:
                        self.storage.fetch(rel, tmp)
                    except StorageMissing as exc:
                        shutil.rmtree(tmp, ignore_errors=True)
                        raise StorageMissing(f"this worker cannot read the avatar {rel}: {exc}") from None
                    except BaseException:
                        # a full disk or a dropped mount: the size cap never sees dot-names, so
                        # a half copy left here would hold its space for good
                        shutil.rmtree(tmp, ignore_errors=True)
                        raise
                    os.replace(tmp, path)
                    self.fetches += 1

    def _thread_lock(self, key: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(key, threading.Lock())
