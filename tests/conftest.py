"""Shared fixtures: synthetic faces, clips and speech, made once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from fixtures import astronaut, espeak, talking_frames, write_video

os.environ.setdefault("LIPDUB_PROGRESS", "0")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def speech_wav(media_dir) -> Path:
    """About 3 s of English speech from espeak-ng."""
    return espeak("The quick brown fox jumps over the lazy dog, and then it sleeps.", media_dir / "speech.wav")


@pytest.fixture(scope="session")
def face_png(media_dir) -> Path:
    import cv2

    path = media_dir / "astronaut.png"
    cv2.imwrite(str(path), astronaut()[:, :, ::-1])
    return path


@pytest.fixture(scope="session")
def talking_clip(media_dir, speech_wav) -> Path:
    """A 2 s, 25 fps, 512x512 H.264 clip of the astronaut talking, with an AAC speech track."""
    return write_video(media_dir / "talking.mp4", talking_frames(50), fps=25, audio=speech_wav)


@pytest.fixture(scope="session")
def silent_clip(media_dir) -> Path:
    """A 1 s clip with no audio stream."""
    return write_video(media_dir / "silent.mp4", talking_frames(25), fps=25)


@pytest.fixture(scope="session")
def no_face_clip(media_dir) -> Path:
    """A 1 s clip of a moving grey gradient: no face anywhere."""
    ramp = np.tile(np.linspace(0, 255, 256, dtype=np.uint8), (256, 1))
    frames = [np.dstack([np.roll(ramp, 5 * i, axis=1)] * 3) for i in range(25)]
    return write_video(media_dir / "noface.mp4", frames, fps=25)


def shared_clip(name: str) -> Path:
    """A clip from ../shared/data, or skip the test clearly when it is absent."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"benchmark clip {path} not present (only on development machines)")
    return path
