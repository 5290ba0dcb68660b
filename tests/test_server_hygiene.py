"""A service that runs for months: free disk in /health, 507 on a full disk with the database
intact and the server answering, retention through the app, no job row ever lost."""

from __future__ import annotations

import subprocess
import threading
import time

import pytest

pytest.importorskip("fastapi")

from test_server_api import FAKES, make_client, upload, wait_for  # noqa: E402

from lipdub.errors import OutputError  # noqa: E402
from lipdub.jobstore.store import Store  # noqa: E402


def disk_hog(ctx):
    """Writes its result until the disk is full, then fails as the video writer does: the
    partial file removed, one line saying why."""
    out = ctx.work_dir / "result.mp4.partial.mp4"
    ctx.progress("rendering", 0.1)
    try:
        with open(out, "wb") as f:
            while True:
                f.write(b"\0" * (1 << 20))
                f.flush()
    except OSError as exc:
        out.unlink(missing_ok=True)
        raise OutputError(f"cannot write {out.name}: {exc.strerror}") from None


@pytest.fixture
def tiny_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root or CAP_SYS_ADMIN): disk-full "
                    "behaviour is measured by benchmarks/reliability.py where it can be")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(root, leave: int) -> None:
    import shutil

    (root / "filler").unlink(missing_ok=True)
    free = shutil.disk_usage(root).free
    with open(root / "filler", "wb") as f:
        f.write(b"\0" * max(0, free - leave))


def test_health_reports_free_disk(tmp_path):
    with make_client(tmp_path) as client:
        health = client.get("/health").json()
    disk = health["disk"]
    assert 0 < disk["free_bytes"] <= disk["total_bytes"] and disk["low"] is False
    assert health["housekeeping"] == {"keep_days": None, "max_data_bytes": None, "last_sweep": None}


def test_disk_full_gives_507_keeps_every_row_and_the_server_answers(tiny_disk, talking_clip, speech_wav):
    jobs = {**FAKES, "generate": disk_hog}
    answers, stop = [], threading.Event()
    with make_client(tiny_disk, jobs=jobs, min_free_bytes=512 * 1024) as client:
        r = client.post("/avatars", files={"file": upload(talking_clip)})
        avatar = wait_for(client, f"/avatars/{r.json()['id']}")
        assert avatar["state"] == "ready"

        def poll():  # the server must answer all along
            while not stop.is_set():
                answers.append(client.get("/health").status_code)
                time.sleep(0.05)
        watcher = threading.Thread(target=poll)
        watcher.start()
        try:
            # 1. a job that fills the disk while it runs fails with the reason, and is recorded
            r = client.post("/jobs", data={"avatar_id": avatar["id"]}, files={"audio": upload(speech_wav)})
            assert r.status_code == 202
            job = wait_for(client, f"/jobs/{r.json()['id']}", timeout=60)
            assert job["state"] == "failed" and "No space left on device" in job["error"], job
            # 2. with the disk (nearly) full, uploads are refused with 507, nothing half-saved
            fill(tiny_disk, leave=256 * 1024)
            health = client.get("/health").json()
            assert health["disk"]["low"] is True and health["status"].startswith("degraded")
            r = client.post("/jobs", data={"avatar_id": avatar["id"]}, files={"audio": upload(speech_wav)})
            assert r.status_code == 507 and "disk is full" in r.json()["detail"]
            fill(tiny_disk, leave=0)  # really full: the write itself fails
            r = client.post("/avatars", files={"file": upload(talking_clip)})
            assert r.status_code == 507, r.text
            assert not list((tiny_disk / "data" / "uploads").glob("*.part"))
        finally:
            stop.set()
            watcher.join()
        (tiny_disk / "filler").unlink()
        # 3. space back: everything works again
        r = client.post("/avatars", files={"file": upload(talking_clip)})
        assert r.status_code == 202
        assert wait_for(client, f"/avatars/{r.json()['id']}")["state"] == "ready"
        rows = client.get("/jobs").json()
    assert answers and set(answers) == {200}
    assert [j["kind"] for j in rows] == ["prepare", "generate", "prepare"]  # no row lost or half-made
    store = Store(tiny_disk / "data" / "lipdub.sqlite3")
    assert store.integrity() == "ok"


def test_retention_through_the_app_keeps_avatars_and_running_work(tmp_path, talking_clip, speech_wav):
    with make_client(tmp_path, keep_days=1) as client:
        r = client.post("/avatars", files={"file": upload(talking_clip)})
        avatar = wait_for(client, f"/avatars/{r.json()['id']}")
        r = client.post("/jobs", data={"avatar_id": avatar["id"]}, files={"audio": upload(speech_wav)})
        job = wait_for(client, f"/jobs/{r.json()['id']}")
        assert job["state"] == "done" and client.get(f"/jobs/{job['id']}/result").status_code == 200
        janitor = client.app.state.janitor
        assert janitor.sweep()["expired_jobs"] == 0  # a fresh job stays
        report = janitor.sweep(time.time() + 2 * 86400)
        assert report["expired_jobs"] == 2 and report["freed_bytes"] > 0
        assert client.get(f"/jobs/{job['id']}").status_code == 404
        assert not (tmp_path / "data" / "jobs" / job["id"]).exists()
        assert not list((tmp_path / "data" / "uploads").iterdir())  # audio and source uploads gone
        again = client.get(f"/avatars/{avatar['id']}").json()
        assert again["state"] == "ready"  # the avatar stays, and still works
        r = client.post("/jobs", data={"avatar_id": avatar["id"]}, files={"audio": upload(speech_wav)})
        assert wait_for(client, f"/jobs/{r.json()['id']}")["state"] == "done"
        assert client.get("/health").json()["housekeeping"]["last_sweep"]["expired_jobs"] == 2


def test_an_upload_that_meets_a_full_disk_midway_is_a_507_and_leaves_nothing(tiny_disk, talking_clip):
    with make_client(tiny_disk, min_free_bytes=0) as client:  # no reserve: the write itself fails
        fill(tiny_disk, leave=64 * 1024)
        r = client.post("/avatars", files={"file": upload(talking_clip)})  # ~300 KB
        assert r.status_code == 507 and "not saved" in r.json()["detail"], r.text
        assert not [p for p in (tiny_disk / "data" / "uploads").iterdir()]
        assert client.get("/health").status_code == 200
        assert client.get("/avatars").json() == []
    assert Store(tiny_disk / "data" / "lipdub.sqlite3").integrity() == "ok"


def test_an_outcome_that_can_never_be_recorded_fails_the_job_instead_of_hanging(tmp_path):
    from lipdub.server.queue import LocalQueue

    def unstorable(ctx):
        return {"value": object()}  # not JSON: no retry can ever store it

    store = Store(tmp_path / "jobs.db")
    queue = LocalQueue(store, tmp_path, {"odd": unstorable}, isolation="thread")
    job_id = queue.submit("odd", {}, {})["id"]
    queue.start()
    try:
        deadline = time.monotonic() + 20
        while store.get_job(job_id)["state"] not in ("done", "failed"):
            assert time.monotonic() < deadline, store.get_job(job_id)
            time.sleep(0.05)
    finally:
        queue.stop()
    job = store.get_job(job_id)
    assert job["state"] == "failed" and "internal error" in job["error"]


def test_an_upload_that_would_eat_the_disk_reserve_is_refused_before_it_is_read(tmp_path):
    import io
    import shutil
    from types import SimpleNamespace

    from fastapi import HTTPException

    from lipdub.server.uploads import save_upload

    free = shutil.disk_usage(tmp_path).free
    big = SimpleNamespace(file=io.BytesIO(b""), size=100 << 20, filename="x.wav")  # says 100 MB
    with pytest.raises(HTTPException) as refused:
        save_upload(big, tmp_path, "audio", limit=1 << 30, max_video_seconds=60, max_audio_seconds=60,
                    min_free_bytes=free - (50 << 20))
    assert refused.value.status_code == 507
    assert not list((tmp_path / "uploads").iterdir())


@pytest.mark.parametrize("fails", ["add_avatar", "submit"])
def test_a_database_write_that_fails_leaves_no_upload_or_avatar_behind(tmp_path, talking_clip, speech_wav,
                                                                        fails):
    import sqlite3

    with make_client(tmp_path) as client:
        app = client.app
        target = app.state.store if fails == "add_avatar" else app.state.queue

        def full(*args, **kwargs):
            raise sqlite3.OperationalError("database or disk is full")

        setattr(target, fails, full)
        r = client.post("/jobs", files={"audio": upload(speech_wav), "video": upload(talking_clip)})
        assert r.status_code == 507, r.text
        assert not [p for p in (tmp_path / "data" / "uploads").iterdir() if not p.name.startswith(".")]
        assert app.state.store.list_avatars() == []
