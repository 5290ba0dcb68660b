"""`lipdub demo` end to end (a short sentence), and its espeak-ng error."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from lipdub.errors import MissingDependencyError


def test_demo_writes_a_talking_photo(tmp_path):
    if shutil.which("espeak-ng") is None and shutil.which("espeak") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    from lipdub.demo import run_demo
    from lipdub.face import FaceTracker, mouth_aperture
    from lipdub.video import probe, read_frames

    out = tmp_path / "demo.mp4"
    summary = run_demo(out, text="Hello there, I can talk.", idle_seconds=2.0)
    info = probe(out)
    assert info.has_video and info.has_audio
    assert (info.width, info.height) == (512, 512)
    assert abs(info.duration - summary["frames"] / 25.0) < 0.15
    frames = list(read_frames(out))
    with FaceTracker(mode="video") as tracker:
        apertures = [mouth_aperture(tracker.track(f)) for f in frames]
    # The mouth moves while she speaks.
    assert np.nanmax(apertures) - np.nanmin(apertures) > 0.1


def test_demo_without_espeak_says_how_to_fix(tmp_path, monkeypatch):
    import lipdub.demo as demo

    monkeypatch.setattr(demo.shutil, "which", lambda name: None)
    with pytest.raises(MissingDependencyError, match="apt-get install espeak-ng"):
        demo.run_demo(tmp_path / "x.mp4")
    assert not (tmp_path / "x.mp4").exists()
