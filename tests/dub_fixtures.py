"""One tiny trained avatar shared by test_controls, test_api and test_batch (built once per
session: preparing and training are the slow part), plus short speech clips."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

_CACHE: dict[str, object] = {}


def trained_avatar(talking_clip: Path, tmp_path_factory):
    """The conftest talking clip, prepared, renderer trained for 3 steps at 32 px."""
    if "avatar" not in _CACHE:
        from lipdub.avatar import Avatar, PrepareOptions, prepare
        from lipdub.render.train import TrainOptions, train_renderer

        folder = tmp_path_factory.mktemp("shared-avatar") / "a"
        prepare(talking_clip, folder, PrepareOptions(fps=25.0))
        avatar = Avatar.load(folder)
        train_renderer(avatar, TrainOptions(steps=3, size=32, batch_size=4, widths=(8, 16, 16)))
        _CACHE["avatar"] = avatar
    return _CACHE["avatar"]


def write_wav(path: Path, samples: np.ndarray, rate: int = 16000) -> Path:
    data = np.clip(np.asarray(samples, np.float32), -1, 1)
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes((data * 32767).astype("<i2").tobytes())
    return path


def padded_speech(speech_wav: Path, out: Path, before: float = 1.0, after: float = 1.0) -> Path:
    """``speech_wav`` with ``before``/``after`` seconds of digital silence around it (16 kHz)."""
    from lipdub.audio import load_audio

    wav = load_audio(speech_wav)
    silence = lambda s: np.zeros(int(s * 16000), np.float32)  # noqa: E731
    return write_wav(out, np.concatenate([silence(before), wav, silence(after)]))
