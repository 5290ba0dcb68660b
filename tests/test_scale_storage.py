"""The shared-folder storage and the per-worker avatar cache (no broker needed)."""

from __future__ import annotations

import os
import time

import pytest

from lipdub.errors import InputError
from lipdub.scale.storage import AvatarCache, SharedDirStorage, StorageMissing


def make_avatar(root, rel="avatars/a1", frames=3):
    d = root / rel
    (d / "frames").mkdir(parents=True, exist_ok=True)
    for i in range(frames):
        (d / "frames" / f"{i}.png").write_bytes(b"x" * (i + 1))
    (d / "manifest.json").write_text("{}")
    return d


def test_paths_outside_the_storage_are_refused(tmp_path):
    storage = SharedDirStorage(tmp_path)
    for rel in ("/etc/passwd", "../x", "avatars/../../x", ""):
        with pytest.raises(InputError, match="invalid storage path"):
            storage.fetch(rel, tmp_path / "out")


def test_fetch_put_and_version(tmp_path):
    shared, local = tmp_path / "shared", tmp_path / "local"
    storage = SharedDirStorage(shared)
    make_avatar(shared)
    assert storage.version("avatars/missing") is None
    v1 = storage.version("avatars/a1")
    storage.fetch("avatars/a1", local / "a1")
    assert (local / "a1" / "frames" / "2.png").read_bytes() == b"xxx"
    with pytest.raises(StorageMissing, match="uploads/none.wav is not in shared folder"):
        storage.fetch("uploads/none.wav", local / "none.wav")

    (local / "a1" / "renderer.onnx").write_bytes(b"model")
    storage.put(local / "a1", "avatars/a1")  # replaces the folder as a whole
    assert (shared / "avatars" / "a1" / "renderer.onnx").read_bytes() == b"model"
    assert storage.version("avatars/a1") != v1
    assert not [p for p in (shared / "avatars").iterdir() if p.name.startswith(".")]  # no leftovers
    (local / "r.mp4").write_bytes(b"video")
    storage.put(local / "r.mp4", "jobs/j1/result.mp4")
    assert (shared / "jobs" / "j1" / "result.mp4").read_bytes() == b"video"


def test_avatar_cache_fetches_once_and_again_after_a_change(tmp_path):
    shared = tmp_path / "shared"
    storage = SharedDirStorage(shared)
    src = make_avatar(shared)
    cache = AvatarCache(storage, tmp_path / "cache")
    first = cache.get("avatars/a1")
    assert cache.get("avatars/a1") == first and cache.fetches == 1
    assert (first / "frames" / "0.png").read_bytes() == b"x"
    time.sleep(0.01)
    (src / "renderer.onnx").write_bytes(b"trained")  # the avatar changed in the storage
    second = cache.get("avatars/a1")
    assert second != first and (second / "renderer.onnx").exists() and cache.fetches == 2
    assert first.exists()  # a job may still be reading the old copy


def test_avatar_cache_missing_or_unreadable_says_so(tmp_path):
    cache = AvatarCache(SharedDirStorage(tmp_path / "elsewhere"), tmp_path / "cache")
    with pytest.raises(StorageMissing, match=r"cannot read the avatar avatars/a1: .*--storage"):
        cache.get("avatars/a1")
    if os.geteuid() == 0:
        return  # root reads anything: the permission case cannot be shown
    d = make_avatar(tmp_path / "locked")
    os.chmod(d / "frames", 0)
    try:
        with pytest.raises(StorageMissing, match="cannot read the avatar"):
            AvatarCache(SharedDirStorage(tmp_path / "locked"), tmp_path / "c2").get("avatars/a1")
    finally:
        os.chmod(d / "frames", 0o755)


def test_avatar_cache_with_a_cap_evicts_least_recently_used_but_never_one_in_use(tmp_path):
    shared = tmp_path / "shared"
    storage = SharedDirStorage(shared)
    for name in ("a1", "a2", "a3"):
        d = make_avatar(shared, f"avatars/{name}")
        (d / "frames" / "big.bin").write_bytes(b"\0" * 10_000)  # each copy ~10 KB
    cache = AvatarCache(storage, tmp_path / "cache", max_bytes=25_000)  # room for two
    a1 = cache.get("avatars/a1")
    cache.release(a1)
    a2 = cache.get("avatars/a2")
    cache.release(a2)
    time.sleep(0.02)
    assert cache.get("avatars/a1") == a1  # a1 used again: a2 is now the least recently used
    cache.release(a1)
    a3 = cache.get("avatars/a3")  # over the cap: a2 goes
    assert a1.is_dir() and a3.is_dir() and not a2.exists() and cache.evictions == 1
    # a copy a job still holds stays, even when it is the oldest and the cache is over its cap
    time.sleep(0.02)
    cache.release(a3)
    held = cache.get("avatars/a1")  # not released: a job is reading it
    time.sleep(0.02)
    cache.get("avatars/a2")  # fetched again; over the cap, a3 (free) goes, a1 (held) stays
    assert held.is_dir() and not a3.exists() and cache.fetches == 4
    assert not [p for p in (tmp_path / "cache" / "avatars").iterdir() if p.name.startswith(".evicted")]


def test_avatar_cache_without_a_cap_keeps_everything(tmp_path):
    shared = tmp_path / "shared"
    storage = SharedDirStorage(shared)
    cache = AvatarCache(storage, tmp_path / "cache")
    for name in ("a1", "a2", "a3"):
        make_avatar(shared, f"avatars/{name}")
        cache.release(cache.get(f"avatars/{name}"))
    assert len([p for p in (tmp_path / "cache" / "avatars").iterdir() if p.is_dir()]) == 3
    assert cache.evictions == 0


def test_avatar_cache_removes_a_half_fetched_copy_when_the_fetch_fails(tmp_path):
    shared = tmp_path / "shared"
    make_avatar(shared)
    storage = SharedDirStorage(shared)

    def failing_fetch(rel, dest):  # a full disk halfway through the copy
        dest.mkdir(parents=True)
        (dest / "manifest.json").write_text("{}")
        raise OSError(28, "No space left on device")

    storage.fetch = failing_fetch
    cache = AvatarCache(storage, tmp_path / "cache")
    with pytest.raises(OSError, match="No space"):
        cache.get("avatars/a1")
    assert not [p for p in (tmp_path / "cache").iterdir() if ".partial-" in p.name]
