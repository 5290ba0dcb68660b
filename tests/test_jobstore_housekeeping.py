"""Retention and the data folder's size cap (lipdub.jobstore.housekeeping), on a real store."""

from __future__ import annotations

import os
import time

import pytest

from lipdub.jobstore.housekeeping import DAY, Janitor, disk_free, is_disk_full, tree_bytes
from lipdub.jobstore.store import Store


def add_job(store, data, kind="generate", *, state="done", finished=None, size=1000, avatar=None):
    """A job with an upload and a result of ``size`` bytes each, ended at ``finished``."""
    job = store.add_job(kind, {"inputs": {}, "options": {}})
    upload = data / "uploads" / f"{job['id']}.wav"
    upload.parent.mkdir(parents=True, exist_ok=True)
    upload.write_bytes(b"\0" * size)
    inputs = {"audio" if kind == "generate" else "source": f"uploads/{upload.name}"}
    if avatar:
        inputs["avatar_dir"] = f"avatars/{avatar}"
    store._exec("UPDATE jobs SET params = ? WHERE id = ?",  # noqa: SLF001 - test setup
                (f'{{"inputs": {__import__("json").dumps(inputs)}, "options": {{}}}}', job["id"]))
    (data / "jobs" / job["id"]).mkdir(parents=True)
    (data / "jobs" / job["id"] / "result.mp4").write_bytes(b"\0" * size)
    if state != "queued":
        store.claim("w")
        if state != "running":
            store.finish(job["id"], state, error="x" if state == "failed" else None)
            store._exec("UPDATE jobs SET finished = ? WHERE id = ?", (finished, job["id"]))  # noqa: SLF001
    return job["id"]


@pytest.fixture
def setup(tmp_path):
    data = tmp_path / "data"
    store = Store(data / "lipdub.sqlite3")
    return store, data


def files_left(data, job_id):
    return (data / "jobs" / job_id).exists() or (data / "uploads" / f"{job_id}.wav").exists()


def test_keep_days_removes_old_finished_jobs_only(setup):
    store, data = setup
    now = time.time()
    old_done = add_job(store, data, finished=now - 8 * DAY)
    old_failed = add_job(store, data, state="failed", finished=now - 9 * DAY)
    recent = add_job(store, data, finished=now - 1 * DAY)
    running = add_job(store, data, state="running")
    store._exec("UPDATE jobs SET created = ? WHERE id = ?", (now - 30 * DAY, running))  # noqa: SLF001
    queued = add_job(store, data, state="queued")
    report = Janitor(store, data, keep_days=7).sweep(now)
    assert report["expired_jobs"] == 2 and report["freed_bytes"] == 4000
    for job_id in (old_done, old_failed):
        assert store.get_job(job_id) is None and not files_left(data, job_id)
    for job_id in (recent, running, queued):
        assert store.get_job(job_id) is not None and files_left(data, job_id)


def test_an_avatars_preparation_row_outlives_retention_but_its_upload_goes(setup):
    store, data = setup
    now = time.time()
    prep = add_job(store, data, kind="prepare", finished=now - 30 * DAY)
    store.add_avatar("a" * 32, "me", "video", prep)
    janitor = Janitor(store, data, keep_days=7)
    assert janitor.sweep(now)["expired_jobs"] == 1
    assert store.get_job(prep) is not None  # the avatar's state is read from it
    assert store.get_avatar("a" * 32)["state"] == "ready"
    assert not files_left(data, prep)
    assert janitor.sweep(now)["expired_jobs"] == 0  # the kept row is not expired again every sweep
    store.delete_avatar("a" * 32)
    Janitor(store, data, keep_days=7).sweep(now)
    assert store.get_job(prep) is None


def test_size_cap_removes_the_longest_finished_first_never_a_running_job(setup):
    store, data = setup
    now = time.time()
    oldest = add_job(store, data, finished=now - 300, size=50_000)
    middle = add_job(store, data, finished=now - 200, size=50_000)
    newest = add_job(store, data, finished=now - 100, size=50_000)
    running = add_job(store, data, state="running", size=50_000)
    total = tree_bytes(data)
    assert total >= 400_000
    cap = total - 150_000  # two finished jobs (100 KB each) must go
    report = Janitor(store, data, max_bytes=cap).sweep(now)
    assert report["expired_jobs"] == 2 and tree_bytes(data) <= cap
    assert store.get_job(oldest) is None and store.get_job(middle) is None
    assert store.get_job(newest) is not None and files_left(data, newest)
    # a cap below what running work needs removes every finished job but keeps the running one
    Janitor(store, data, max_bytes=1).sweep(now)
    assert store.get_job(newest) is None
    assert store.get_job(running)["state"] == "running" and files_left(data, running)


def test_stale_partial_uploads_are_swept(setup):
    store, data = setup
    (data / "uploads").mkdir(parents=True)
    stale, fresh = data / "uploads" / "a.part", data / "uploads" / "b.part"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"x")
    two_hours_ago = time.time() - 2 * 3600
    os.utime(stale, (two_hours_ago, two_hours_ago))  # left by a crash mid-upload
    Janitor(store, data, keep_days=1).sweep()
    assert not stale.exists() and fresh.exists()  # an upload in progress is left alone


def test_janitor_runs_in_the_background_and_stops(setup):
    store, data = setup
    old = add_job(store, data, finished=time.time() - 3 * DAY)
    janitor = Janitor(store, data, keep_days=1, interval=0.05)
    janitor.start()
    deadline = time.monotonic() + 5
    while store.get_job(old) is not None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    janitor.stop()
    assert janitor.last["expired_jobs"] >= 0


def test_helpers(tmp_path):
    free = disk_free(tmp_path)
    assert 0 < free["free_bytes"] <= free["total_bytes"]
    assert is_disk_full(OSError(28, "No space left on device"))
    assert is_disk_full(__import__("sqlite3").OperationalError("database or disk is full"))
    assert not is_disk_full(OSError(13, "Permission denied"))
    with pytest.raises(ValueError):
        Janitor(None, tmp_path, keep_days=0)
