"""The HTTP API through an in-process ASGI client: each route, each error code, cancel, ordering.

Most tests inject fast fake job functions (defined here at module level so a spawned job process
can import them too); one runs the real `prepare` on the fixture clip end to end.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import time
from pathlib import Path

import pytest

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from lipdub.errors import InputError  # noqa: E402
from lipdub.server import ServerConfig, create_app  # noqa: E402

# ---------------------------------------------------------------------------------- fake jobs


def fake_prepare(ctx):
    """Stands in for avatar preparation: keeps a copy of the source for fake_generate."""
    for i in range(4):
        ctx.progress("tracking faces", (i + 1) / 4)
        time.sleep(0.01)
    src = ctx.path(ctx.inputs["source"])
    out = ctx.path(ctx.inputs["avatar_dir"])
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, out / ("source" + src.suffix))
    return {"frames": 4, "width": 64, "height": 64, "fps": 25.0, "trained": False}


def fake_generate(ctx):
    """Stands in for generation: 'renders' by copying the avatar's source video."""
    avatar_dir = ctx.path(ctx.inputs["avatar_dir"])
    if not avatar_dir.is_dir():
        raise InputError("the avatar was deleted before this job ran")
    for i in range(4):
        ctx.progress("rendering", (i + 1) / 4)
        time.sleep(0.01)
    out = ctx.work_dir / "result.mp4"
    shutil.copy(next(avatar_dir.glob("source.*")), out)
    return {"output": str(out.relative_to(ctx.data_dir))}


def endless(ctx):
    """Reports progress forever: only a cancel (or a shutdown) ends it."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ctx.progress("spinning", 0.5)
        time.sleep(0.02)
    raise AssertionError("never cancelled")


def silent_sleeper(ctx):
    """Sleeps without reporting progress: only terminating its process stops it."""
    ctx.progress("sleeping", 0.1)
    time.sleep(60)
    return {}


def failing(ctx):
    raise InputError("no usable face was found in the input")


FAKES = {"prepare": fake_prepare, "generate": fake_generate}

# ----------------------------------------------------------------------------------- helpers


def make_client(tmp_path, jobs=FAKES, **overrides) -> TestClient:
    settings = dict(data_dir=tmp_path / "data", isolation="thread", workers=1)
    settings.update(overrides)
    return TestClient(create_app(ServerConfig(**settings), jobs=jobs))


def wait_for(client, url, until=("done", "failed", "cancelled", "ready"), timeout=30.0, headers=None):
    deadline = time.monotonic() + timeout
    while True:
        r = client.get(url, headers=headers)
        assert r.status_code == 200, r.text
        if r.json()["state"] in until:
            return r.json()
        assert time.monotonic() < deadline, f"{url} stuck in {r.json()}"
        time.sleep(0.05)


def upload(path: Path, name: str | None = None, mime="application/octet-stream"):
    return (name or path.name, path.read_bytes(), mime)


@pytest.fixture
def client(tmp_path):
    with make_client(tmp_path) as c:
        yield c


@pytest.fixture
def avatar(client, talking_clip):
    r = client.post("/avatars", files={"file": upload(talking_clip)})
    assert r.status_code == 202, r.text
    return wait_for(client, f"/avatars/{r.json()['id']}")


# -------------------------------------------------------------------------------------- tests


def test_page_health_config(client):
    page = client.get("/")
    assert page.status_code == 200 and "<video" in page.text and "text/html" in page.headers["content-type"]
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["versions"]["lipdub"]
    assert health["queue"]["workers"] == 1 and health["queue"]["depth"] == 0
    config = client.get("/config").json()
    assert config["max_upload_bytes"] == 500 * 1024 * 1024
    assert client.get("/openapi.json").status_code == 200 and client.get("/docs").status_code == 200


def test_avatar_lifecycle(client, talking_clip, face_png):
    r = client.post("/avatars", files={"file": upload(talking_clip)}, data={"fps": "25"})
    assert r.status_code == 202
    created = r.json()
    avatar = wait_for(client, created["status_url"])
    assert avatar["state"] == "ready" and avatar["source_kind"] == "video" and avatar["info"]["frames"] == 4
    assert avatar["name"] == "talking.mp4"
    photo = client.post("/avatars", files={"file": upload(face_png)}).json()
    assert wait_for(client, f"/avatars/{photo['id']}")["source_kind"] == "photo"
    listed = [a["id"] for a in client.get("/avatars").json()]
    assert listed == [photo["id"], created["id"]]  # newest first
    assert client.delete(f"/avatars/{created['id']}").json() == {"id": created["id"], "deleted": True}
    assert client.get(f"/avatars/{created['id']}").status_code == 404
    assert client.delete(f"/avatars/{created['id']}").status_code == 404


def test_job_on_avatar_result_with_range(client, avatar, speech_wav, talking_clip):
    r = client.post("/jobs", data={"avatar_id": avatar["id"]}, files={"audio": upload(speech_wav)})
    assert r.status_code == 202, r.text
    job = wait_for(client, f"/jobs/{r.json()['id']}")
    assert job["state"] == "done" and job["progress"] == 1.0 and job["result_url"]
    whole = client.get(job["result_url"])
    assert whole.status_code == 200 and whole.headers["content-type"] == "video/mp4"
    assert whole.content == talking_clip.read_bytes()
    assert whole.headers["accept-ranges"] == "bytes"
    part = client.get(job["result_url"], headers={"Range": "bytes=10-109"})
    assert part.status_code == 206 and part.content == whole.content[10:110]
    assert part.headers["content-range"] == f"bytes 10-109/{len(whole.content)}"
    bad = client.get(job["result_url"], headers={"Range": f"bytes={len(whole.content) + 5}-"})
    assert bad.status_code == 416
    # the seed system's names
    assert client.get(f"/status/{job['id']}").json()["state"] == "done"
    assert client.get(f"/download/{job['id']}").content == whole.content


def test_job_with_uploaded_video_prepares_first(client, talking_clip, speech_wav):
    r = client.post("/generate", files={"video": upload(talking_clip), "audio": upload(speech_wav)})
    assert r.status_code == 202, r.text
    job = wait_for(client, f"/jobs/{r.json()['id']}")
    assert job["state"] == "done"
    assert client.get(f"/avatars/{r.json()['avatar_id']}").json()["state"] == "ready"
    kinds = [j["kind"] for j in client.get("/jobs").json()]
    assert kinds == ["generate", "prepare"]


def test_list_jobs_newest_first_and_filters(client, avatar, speech_wav):
    ids = [client.post("/jobs", data={"avatar_id": avatar["id"]},
                       files={"audio": upload(speech_wav)}).json()["id"] for _ in range(3)]
    listed = [j["id"] for j in client.get("/jobs", params={"kind": "generate"}).json()]
    assert listed == ids[::-1]
    assert len(client.get("/jobs", params={"limit": 1}).json()) == 1
    assert client.get("/jobs", params={"state": "bogus"}).status_code == 422


def test_text_file_named_mp4_is_refused(client, tmp_path, speech_wav, silent_clip):
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video\n" * 50)
    r = client.post("/avatars", files={"file": upload(fake, mime="video/mp4")})
    assert r.status_code == 415 and "could not be read as media" in r.json()["detail"]
    r = client.post("/avatars", files={"file": upload(speech_wav, "speech.mp4")})
    assert r.status_code == 415 and "no picture" in r.json()["detail"]
    r = client.post("/jobs", files={"video": upload(silent_clip), "audio": upload(silent_clip)})
    assert r.status_code == 415 and "no sound" in r.json()["detail"]
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    assert client.post("/avatars", files={"file": upload(empty)}).status_code == 422
    assert not list((tmp_path / "data" / "uploads").iterdir())  # refused uploads leave nothing


def test_traversal_filename_is_never_used(client, talking_clip, tmp_path):
    r = client.post("/avatars", files={"file": upload(talking_clip, "../../../escape.mp4")})
    assert r.status_code == 202
    avatar = wait_for(client, f"/avatars/{r.json()['id']}")
    assert avatar["name"] == "escape.mp4"
    assert not list(tmp_path.rglob("escape.mp4"))
    stored = [p.name for p in (tmp_path / "data" / "uploads").iterdir()]
    assert len(stored) == 1 and len(Path(stored[0]).stem) == 32 and stored[0].endswith(".mp4")


def test_oversize_upload_is_413(tmp_path, talking_clip):
    with make_client(tmp_path, max_upload_bytes=20_000) as client:
        r = client.post("/avatars", files={"file": upload(talking_clip)})
        assert r.status_code == 413 and "too large" in r.json()["detail"]

        def chunks():  # no Content-Length: the server has to count
            for _ in range(100):
                yield b"x" * 1000

        r = client.post("/avatars", content=chunks(),
                        headers={"content-type": "multipart/form-data; boundary=zz"})
        assert r.status_code == 413
        assert not (tmp_path / "data" / "uploads").exists() or not list((tmp_path / "data" / "uploads").iterdir())


def test_duration_limits(tmp_path, talking_clip, speech_wav):
    with make_client(tmp_path, max_audio_seconds=1.0, max_video_seconds=1.0) as client:
        r = client.post("/avatars", files={"file": upload(talking_clip)})
        assert r.status_code == 422 and "limit is 1 s" in r.json()["detail"]
        r = client.post("/jobs", files={"video": upload(talking_clip), "audio": upload(speech_wav)})
        assert r.status_code == 422 and "audio" in r.json()["detail"]


def test_bad_requests(client, avatar, talking_clip, speech_wav):
    missing = "0" * 32
    assert client.get(f"/jobs/{missing}").status_code == 404
    assert client.get(f"/jobs/{missing}/result").status_code == 404
    assert client.delete(f"/jobs/{missing}").status_code == 404
    assert client.get(f"/avatars/{missing}").status_code == 404
    assert client.get("/jobs/..%2F..%2Fetc").status_code in (404, 422)
    assert client.get("/jobs/not-an-id").status_code == 422
    audio = {"audio": upload(speech_wav)}
    assert client.post("/jobs", files=audio).status_code == 422  # neither avatar nor video
    both = client.post("/jobs", data={"avatar_id": avatar["id"]},
                       files={**audio, "video": upload(talking_clip)})
    assert both.status_code == 422
    assert client.post("/jobs", data={"avatar_id": missing}, files=audio).status_code == 404
    r = client.post("/jobs", data={"avatar_id": avatar["id"], "options": "[1"}, files=audio)
    assert r.status_code == 422 and "JSON" in r.json()["detail"]
    for bad, why in (({"template": "/etc"}, "server-only"), ({"crf": 99}, "0..51"),
                     ({"shapes": "lips"}, "one of"), ({"mouth_scale": True}, "a number"),
                     ({"keep_silence": 1}, "true or false"), ({"fade_in": 1000}, "0..250"),
                     ({"loop": "bounce"}, "one of")):
        r = client.post("/jobs", data={"avatar_id": avatar["id"], "options": json.dumps(bad)}, files=audio)
        assert r.status_code == 422 and why in r.json()["detail"], r.json()
    r = client.post("/jobs", data={"avatar_id": avatar["id"], "options": json.dumps(
        {"mouth_scale": 1.5, "crf": 20, "fade_in": 25, "keep_silence": True, "loop": "wrap"})},
                    files=audio)
    assert r.status_code == 202
    assert client.post("/avatars", data={"fps": "0"}, files={"file": upload(talking_clip)}).status_code == 422


def test_result_of_unfinished_job_is_409_and_cancel(tmp_path, speech_wav, talking_clip):
    jobs = {"prepare": fake_prepare, "generate": endless}
    with make_client(tmp_path, jobs=jobs) as client:
        r = client.post("/jobs", files={"video": upload(talking_clip), "audio": upload(speech_wav)})
        job_id = r.json()["id"]
        wait_for(client, f"/jobs/{job_id}", until=("running",))
        queued = client.post("/jobs", data={"avatar_id": r.json()["avatar_id"]},
                             files={"audio": upload(speech_wav)}).json()["id"]
        assert client.get(f"/jobs/{job_id}/result").status_code == 409
        # a queued job is cancelled on the spot
        assert client.delete(f"/jobs/{queued}").json()["state"] == "cancelled"
        t0 = time.monotonic()
        assert client.delete(f"/jobs/{job_id}").status_code == 202
        assert wait_for(client, f"/jobs/{job_id}", timeout=5)["state"] == "cancelled"
        assert time.monotonic() - t0 < 3
        assert client.delete(f"/jobs/{job_id}").status_code == 409  # already ended
        assert "cancelled" in client.get(f"/jobs/{job_id}/result").json()["detail"]


def test_cancel_terminates_a_job_process(tmp_path, talking_clip, speech_wav):
    jobs = {"prepare": fake_prepare, "generate": silent_sleeper}
    with make_client(tmp_path, jobs=jobs, isolation="process", cancel_grace=0.5) as client:
        r = client.post("/jobs", files={"video": upload(talking_clip), "audio": upload(speech_wav)})
        job = wait_for(client, f"/jobs/{r.json()['id']}", until=("running",), timeout=60)
        while client.get(f"/jobs/{job['id']}").json()["stage"] != "sleeping":
            time.sleep(0.05)
        t0 = time.monotonic()
        client.delete(f"/jobs/{job['id']}")
        assert wait_for(client, f"/jobs/{job['id']}", timeout=10)["state"] == "cancelled"
        assert time.monotonic() - t0 < 3
        assert client.get("/health").json()["queue"]["busy"] == 0


def test_delete_avatar_while_in_use(tmp_path, talking_clip, speech_wav):
    with make_client(tmp_path, jobs={"prepare": endless, "generate": fake_generate}) as client:
        created = client.post("/avatars", files={"file": upload(talking_clip)}).json()
        wait_for(client, f"/jobs/{created['job_id']}", until=("running",))
        waiting = client.post("/jobs", data={"avatar_id": created["id"]}, files={"audio": upload(speech_wav)})
        assert client.get(waiting.json()["status_url"]).json()["waiting_for"] == created["job_id"]
        r = client.delete(f"/avatars/{created['id']}")
        assert r.status_code == 409 and "cancel them first" in r.json()["detail"]
        client.delete(waiting.json()["status_url"])
        assert client.delete(f"/avatars/{created['id']}").status_code == 200
        assert client.get(f"/jobs/{created['job_id']}").json()["state"] == "cancelled"
        assert not (tmp_path / "data" / "avatars" / created["id"]).exists()
        assert not list((tmp_path / "data" / "uploads").glob("*.mp4"))


def test_failures_are_reported_in_words(tmp_path, talking_clip):
    with make_client(tmp_path, jobs={"prepare": failing, "generate": fake_generate}) as client:
        r = client.post("/avatars", files={"file": upload(talking_clip)})
        avatar = wait_for(client, f"/avatars/{r.json()['id']}")
        assert avatar["state"] == "failed" and avatar["error"] == "no usable face was found in the input"
        r = client.post("/jobs", data={"avatar_id": avatar["id"]},
                        files={"audio": upload(talking_clip)})
        assert r.status_code == 409 and "no usable face" in r.json()["detail"]


def test_api_key(tmp_path, talking_clip):
    with make_client(tmp_path, api_key="s3cret") as client:
        assert client.get("/health").status_code == 200
        assert client.get("/").status_code == 200
        assert client.get("/jobs").status_code == 401
        r = client.post("/avatars", files={"file": upload(talking_clip)})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert client.get("/jobs", headers={"X-API-Key": "wrong"}).status_code == 401
        assert client.get("/jobs", headers={"X-API-Key": "s3cret"}).status_code == 200
        assert client.get("/config", headers={"Authorization": "Bearer s3cret"}).status_code == 200


@pytest.mark.skipif(importlib.util.find_spec("lipdub.pipeline") is not None
                    and importlib.util.find_spec("lipdub.avatar") is not None,
                    reason="the whole engine is installed: the missing-stage message cannot happen")
def test_generate_without_renderer_fails_clearly(tmp_path, talking_clip, speech_wav):
    from lipdub.server.jobs import generate_job

    with make_client(tmp_path, jobs={"prepare": fake_prepare, "generate": generate_job}) as client:
        r = client.post("/jobs", files={"video": upload(talking_clip), "audio": upload(speech_wav)})
        job = wait_for(client, f"/jobs/{r.json()['id']}")
        assert job["state"] == "failed" and "not available in this lipdub build" in job["error"]


@pytest.mark.skipif(importlib.util.find_spec("lipdub.avatar") is None, reason="lipdub.avatar not written yet")
def test_real_prepare_end_to_end(tmp_path, talking_clip):
    """The real avatar preparation, in a job process, through the API."""
    with make_client(tmp_path, jobs=None, isolation="process", train_on_prepare=False) as client:
        r = client.post("/avatars", files={"file": upload(talking_clip)}, data={"max_size": "256"})
        assert r.status_code == 202
        seen = set()
        deadline = time.monotonic() + 120
        while (avatar := client.get(r.json()["status_url"]).json())["state"] == "preparing":
            seen.add((avatar["stage"], round(avatar["progress"], 2)))
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert avatar["state"] == "ready", avatar
        assert avatar["info"]["frames"] == 50 and avatar["info"]["fps"] == 25.0
        assert (tmp_path / "data" / "avatars" / avatar["id"]).is_dir()
        assert len(seen) > 1  # progress moved while it ran
