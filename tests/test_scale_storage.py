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
