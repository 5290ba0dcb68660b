"""The web service with the real engine and its default settings: an uploaded edited video is an
avatar ready to dub as soon as it is prepared (no training step), and a job dubs it."""

from __future__ import annotations

import pytest

from footage_fixtures import edited_frames
from fixtures import write_video

pytest.importorskip("fastapi")


def test_an_uploaded_video_is_ready_once_prepared(tmp_path, speech_wav):
    from test_server_api import make_client, upload, wait_for

    frames, _ = edited_frames()
    clip = write_video(tmp_path / "edited.mp4", frames[:60], fps=25, audio=speech_wav)
    with make_client(tmp_path, jobs=None, isolation="process") as client:
        r = client.post("/avatars", files={"file": upload(clip)})
        assert r.status_code == 202, r.text
        avatar = wait_for(client, f"/avatars/{r.json()['id']}", timeout=120)
        assert avatar["state"] == "ready", avatar
        folder = tmp_path / "data" / "avatars" / avatar["id"]
        assert (folder / "render_bank.npz").is_file() and not (folder / "renderer.onnx").exists()
        r = client.post("/jobs", data={"avatar_id": avatar["id"]}, files={"audio": upload(speech_wav)})
        assert r.status_code == 202, r.text
        job = wait_for(client, f"/jobs/{r.json()['id']}", timeout=120)
        assert job["state"] == "done", job
        assert not (folder / "renderer.onnx").exists()  # generating trained nothing either
        assert client.get(f"/jobs/{job['id']}/result").status_code == 200
