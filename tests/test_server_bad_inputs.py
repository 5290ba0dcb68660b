"""The bad-input corpus through the HTTP API with the real engine: every upload is refused with
a 4xx and a message, or becomes a job that ends with a valid video or a one-line reason; no 500,
no job that is done with a broken result, no server path in a message."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

import bad_media  # noqa: E402
from test_bad_inputs import AUDIO_NAMES, assert_valid_dub, audio_corpus, audio_seconds  # noqa: E402
from test_server_api import wait_for  # noqa: E402

from lipdub.jobstore.store import Store, new_id  # noqa: E402
from lipdub.server import ServerConfig, create_app  # noqa: E402


def register_avatar(data: Path, folder: Path) -> str:
    """A prepared avatar put straight into a server's data dir, as if uploaded earlier."""
    avatar_id = new_id()
    shutil.copytree(folder, data / "avatars" / avatar_id)
    store = Store(data / "lipdub.sqlite3")
    job = store.add_job("prepare", {"inputs": {"avatar_dir": f"avatars/{avatar_id}"}, "options": {}})
    store.claim("setup")
    store.finish(job["id"], "done", result={"frames": 50})
    store.add_avatar(avatar_id, "fixture", "video", job["id"])
    store.close()
    return avatar_id


@pytest.fixture(scope="module")
def server(tmp_path_factory, talking_clip):
    from dub_fixtures import trained_avatar

    data = tmp_path_factory.mktemp("api-bad") / "data"
    avatar_id = register_avatar(data, Path(trained_avatar(talking_clip, tmp_path_factory).path))
    config = ServerConfig(data_dir=data, isolation="thread", workers=1, max_audio_seconds=60)
    with TestClient(create_app(config)) as client:
        yield client, avatar_id, data


@pytest.mark.parametrize("name", AUDIO_NAMES)
def test_api_with_bad_or_odd_audio(server, tmp_path, tmp_path_factory, speech_wav, talking_clip,
                                   silent_clip, face_png, name):
    client, avatar_id, data = server
    case = next(c for c in audio_corpus(tmp_path_factory, speech_wav, talking_clip, silent_clip, face_png)
                if c.name == name)
    if not case.path.is_file():
        pytest.skip("not a file: a client has nothing to upload")
    r = client.post("/jobs", data={"avatar_id": avatar_id},
                    files={"audio": (case.path.name, case.path.read_bytes())})
    if r.status_code != 202:
        assert 400 <= r.status_code < 500 and r.json()["detail"], r.text
        assert case.expect == "error", (r.status_code, r.text)
        assert str(data) not in r.text
        return
    job = wait_for(client, f"/jobs/{r.json()['id']}", timeout=120)
    if case.expect == "ok":
        assert job["state"] == "done", job
        out = tmp_path / "result.mp4"
        out.write_bytes(client.get(f"/jobs/{job['id']}/result").content)
        assert_valid_dub(out, audio_seconds(case.path))
    else:
        assert job["state"] == "failed", job
        error = job["error"]
        assert error and "\n" not in error and "internal error" not in error, error
        assert str(data) not in error, error


def test_api_with_bad_footage_and_options(server, tmp_path, talking_clip, face_png, speech_wav, no_face_clip):
    client, avatar_id, data = server
    for case in bad_media.visual_cases(tmp_path / "visual", talking_clip, face_png, speech_wav, no_face_clip):
        if not case.path.is_file() or case.name in ("4k.mp4", "rotated.mp4", "non-ascii photo"):
            continue  # the good ones are `prepare`'s own tests; here: refusals
        r = client.post("/avatars", files={"file": (case.path.name, case.path.read_bytes())})
        if r.status_code == 202:
            avatar = wait_for(client, f"/avatars/{r.json()['id']}", timeout=120)
            assert avatar["state"] == "failed" and avatar["error"] and "internal" not in avatar["error"]
        else:
            assert r.status_code in (415, 422) and r.json()["detail"], r.text
    for options, status in (("{oops", 422), ('{"template": "/etc"}', 422), ('{"crf": 99}', 422)):
        r = client.post("/jobs", data={"avatar_id": avatar_id, "options": options},
                        files={"audio": ("a.wav", speech_wav.read_bytes())})
        assert r.status_code == status and r.json()["detail"], r.text
    r = client.post("/jobs", data={"avatar_id": "../../etc"}, files={"audio": ("a.wav", speech_wav.read_bytes())})
    assert r.status_code == 422
