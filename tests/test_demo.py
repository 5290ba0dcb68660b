"""`lipdub demo` end to end on a machine without espeak-ng, and espeak-ng's error for custom text."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from lipdub.errors import MissingDependencyError


@pytest.fixture
def no_espeak(monkeypatch):
    import lipdub.demo as demo

    monkeypatch.setattr(demo.shutil, "which", lambda name: None)
    return demo


def test_demo_sentence_ships_with_its_record():
    from lipdub.demo import DEMO_SPEECH, SENTENCE

    record = json.loads(DEMO_SPEECH.with_suffix(".json").read_text())
    assert record["sentence"] == SENTENCE
    assert hashlib.sha256(DEMO_SPEECH.read_bytes()).hexdigest() == record["sha256"]
    assert DEMO_SPEECH.stat().st_size < 100_000


def test_demo_writes_a_talking_photo_without_espeak(no_espeak, tmp_path):
    from lipdub.face import FaceTracker, mouth_aperture
    from lipdub.video import probe, read_frames

    out = tmp_path / "demo.mp4"
    summary = no_espeak.run_demo(out, idle_seconds=2.0)
    assert summary["speech"] == str(no_espeak.DEMO_SPEECH)
    info = probe(out)
    assert info.has_video and info.has_audio
    assert (info.width, info.height) == (512, 512)
    assert abs(info.duration - summary["frames"] / 25.0) < 0.15
    assert summary["frames"] > 100  # the whole sentence (~6 s), not a stub
    frames = list(read_frames(out))
    with FaceTracker(mode="video") as tracker:
        apertures = [mouth_aperture(tracker.track(f)) for f in frames]
    # The mouth moves while she speaks.
    assert np.nanmax(apertures) - np.nanmin(apertures) > 0.1


def test_custom_text_without_espeak_says_how_to_fix(no_espeak, tmp_path):
    with pytest.raises(MissingDependencyError, match="apt-get install espeak-ng"):
        no_espeak.run_demo(tmp_path / "x.mp4", text="Something else entirely.")
    assert not (tmp_path / "x.mp4").exists()


def test_cli_text_without_espeak_is_one_line_error(no_espeak, tmp_path, capsys):
    from lipdub.cli import main

    out = tmp_path / "x.mp4"
    assert main(["demo", "--text", "Something else entirely.", "-o", str(out)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lipdub: error:") and "espeak-ng" in err[0]
    assert not out.exists()
