"""`lipdub batch`: manifests, parallel items, resume, failures reported, broker hand-off."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dub_fixtures import trained_avatar
from fixtures import espeak
from lipdub.batch import BatchItem, is_complete, load_manifest


def test_manifests(tmp_path):
    (tmp_path / "m.csv").write_text(
        "avatar,audio,output,options,mouth_scale\n"
        'av,a.wav,out/a.mp4,"{""fade_in"": 10}",\n'
        "/abs/av,b.wav,/abs/b.mp4,,1.5\n")
    a, b = load_manifest(tmp_path / "m.csv")
    assert a == BatchItem(str(tmp_path / "av"), str(tmp_path / "a.wav"), str(tmp_path / "out/a.mp4"),
                          {"fade_in": 10})
    assert (b.avatar, b.output, b.options) == ("/abs/av", "/abs/b.mp4", {"mouth_scale": 1.5})
    (tmp_path / "m.json").write_text(json.dumps(
        {"items": [{"avatar": "av", "audio": "a.wav", "output": "o.mp4", "options": {"loop": "wrap"}}]}))
    (c,) = load_manifest(tmp_path / "m.json")
    assert c.options == {"loop": "wrap"} and c.audio == str(tmp_path / "a.wav")
    from lipdub.errors import InputError

    (tmp_path / "bad.csv").write_text("avatar,audio\nx,y\n")
    with pytest.raises(InputError, match="output"):
        load_manifest(tmp_path / "bad.csv")


@pytest.fixture(scope="module")
def avatar(talking_clip, tmp_path_factory):
    pytest.importorskip("torch")
    return trained_avatar(talking_clip, tmp_path_factory)


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory):
    """Five short speech files and one broken 'audio' file."""
    folder = tmp_path_factory.mktemp("lines")
    espeak("Hello there.", folder / "line0.wav")
    for k in range(1, 5):
        shutil.copy(folder / "line0.wav", folder / f"line{k}.wav")
    (folder / "line5.wav").write_text("this is not audio\n")
    return folder


def test_batch_folder_parallel_resume_and_failures(avatar, audio_dir, tmp_path, capsys):
    from lipdub.cli import main

    out = tmp_path / "dubbed"
    argv = ["batch", "--avatar", str(avatar.path), "--audio-dir", str(audio_dir), "--out-dir", str(out),
            "--jobs", "2", "--shapes", "template", "--max-size", "128"]
    assert main(argv) == 1                      # one item failed
    text = capsys.readouterr()
    good = [out / f"line{k}.mp4" for k in range(5)]
    assert all(is_complete(p, audio_dir / p.with_suffix(".wav").name) for p in good)
    assert not (out / "line5.mp4").exists()
    assert "5 done, 0 already complete, 1 failed" in text.out
    assert "line5.wav" in text.out and "FAILED" in text.out
    assert "[6/6]" in text.err                  # progress lines

    stamps = [p.stat().st_mtime_ns for p in good]
    assert main(argv) == 1                      # the broken one is still broken...
    text = capsys.readouterr()
    assert "0 done, 5 already complete, 1 failed" in text.out
    assert [p.stat().st_mtime_ns for p in good] == stamps   # ...and nothing else was redone


def test_incomplete_output_is_redone_and_item_options_apply(avatar, audio_dir, tmp_path):
    from lipdub.batch import run_batch
    from lipdub.video import probe

    items = [BatchItem(str(avatar.path), str(audio_dir / "line0.wav"), str(tmp_path / "a.mp4"),
                       {"max_size": 64}),
             BatchItem(str(avatar.path), str(audio_dir / "line1.wav"), str(tmp_path / "b.mp4"))]
    Path(items[0].output).write_bytes(b"half a file")          # an interrupted earlier run
    assert not is_complete(items[0].output, items[0].audio)
    seen = []
    report = run_batch(items, jobs=1, options={"shapes": "template", "max_size": 128},
                       on_result=lambda r, k, n: seen.append((r.status, k, n)))
    assert report.ok and len(report.done) == 2 and seen[-1] == ("done", 2, 2)
    assert probe(items[0].output).width == 64 and probe(items[1].output).width == 128


def test_batch_usage_errors(capsys):
    from lipdub.cli import main

    assert main(["batch"]) != 0
    assert "MANIFEST" in capsys.readouterr().err
    assert main(["batch", "--avatar", "a", "--audio-dir", "d", "--out-dir", "o", "--broker",
                 "redis://127.0.0.1:1/0"]) != 0
    assert "--storage" in capsys.readouterr().err


def test_batch_through_a_broker(avatar, audio_dir, tmp_path, capsys):
    """`lipdub batch --broker`: items run on a real `lipdub worker` through a local Redis."""
    import os
    import signal
    import subprocess
    import sys
    import time

    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    pytest.importorskip("celery")
    redis = pytest.importorskip("redis")
    from lipdub.cli import main
    from lipdub.scale.local import LocalRedis

    storage = tmp_path / "storage"
    storage.mkdir()
    manifest = tmp_path / "jobs.json"
    manifest.write_text(json.dumps([
        {"avatar": str(avatar.path), "audio": str(audio_dir / "line0.wav"), "output": "out/a.mp4"},
        {"avatar": str(avatar.path), "audio": str(audio_dir / "line1.wav"), "output": "out/b.mp4",
         "options": {"max_size": 64}},
        {"avatar": str(avatar.path), "audio": str(audio_dir / "line5.wav"), "output": "out/bad.mp4"},
    ]))
    (tmp_path / "redis").mkdir()
    with LocalRedis(workdir=tmp_path / "redis") as server:
        with open(tmp_path / "worker.log", "w") as log:
            worker = subprocess.Popen([sys.executable, "-m", "lipdub.cli", "worker", "--broker", server.url,
                                       "--storage", str(storage), "--cache-dir", str(tmp_path / "wcache")],
                                      start_new_session=True, stdout=log, stderr=subprocess.STDOUT)
        try:
            r, deadline = redis.Redis.from_url(server.url), time.monotonic() + 60
            while not r.hkeys("lipdub:workers"):
                assert worker.poll() is None, (tmp_path / "worker.log").read_text()
                assert time.monotonic() < deadline, "worker did not register"
                time.sleep(0.1)
            code = main(["batch", str(manifest), "--broker", server.url, "--storage", str(storage),
                         "--shapes", "template", "--max-size", "128", "--timeout", "120"])
        finally:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(10)
    out = capsys.readouterr().out
    assert code == 1 and "2 done, 0 already complete, 1 failed" in out and "bad.mp4" in out
    from lipdub.video import probe

    assert is_complete(tmp_path / "out/a.mp4", audio_dir / "line0.wav")
    assert probe(tmp_path / "out/a.mp4").width == 128 and probe(tmp_path / "out/b.mp4").width == 64


def test_a_broken_result_from_a_worker_is_not_saved_as_done(tmp_path, speech_wav, talking_clip):
    """Copying a worker's result goes through the writers' check: a cut file fails the item."""
    from lipdub.batch import BatchItem, _collect

    cut = tmp_path / "cut.mp4"
    cut.write_bytes(talking_clip.read_bytes()[:2000])

    class Client:
        def result_path(self, job):
            return cut

    item = BatchItem("a", str(speech_wav), str(tmp_path / "out" / "o.mp4"))
    result = _collect(Client(), {"state": "done"}, item, 1.0)
    assert result.status == "failed" and "cannot save the result" in result.error
    assert not list((tmp_path / "out").iterdir())
