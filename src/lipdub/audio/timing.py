"""The one time convention every stage shares: frame ``i`` at ``fps`` shows ``t_i = i / fps``.

Per-frame audio features of frame ``i`` are *centred* on ``t_i`` (not started there, as Wav2Lip
does), so a sound at time ``t`` drives the frame nearest to ``t``. A clip of ``d`` seconds has
``round(d * fps)`` frames (at least one); every stage uses :func:`n_frames_for` so that audio
features, rendered frames and the muxed output agree on the count.
"""

from __future__ import annotations

import math

import numpy as np

#: Sample rate of all audio inside lipdub.
SAMPLE_RATE = 16000


def n_frames_for(duration_or_samples: float | np.ndarray, fps: float, sr: int = SAMPLE_RATE) -> int:
    """Number of video frames for audio lasting ``duration_or_samples``.

    A number is a duration in seconds; an array is the audio itself (``len / sr`` seconds).
    Rounds half up (not Python's round-half-even) so the count never depends on parity.
    """
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if isinstance(duration_or_samples, np.ndarray):
        duration = len(duration_or_samples) / sr
    else:
        duration = float(duration_or_samples)
    return max(1, int(math.floor(duration * fps + 0.5)))


def frame_times(fps: float, n_frames: int) -> np.ndarray:
    """``t_i = i / fps`` for ``i < n_frames``, in seconds (float64)."""
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if n_frames < 1:
        raise ValueError(f"n_frames must be at least 1, got {n_frames}")
    return np.arange(n_frames, dtype=np.float64) / fps


def as_mono_float(audio) -> np.ndarray:
    """Audio as a contiguous 1-D float32 array (the in-memory form every function takes)."""
    arr = np.asarray(audio, dtype=np.float32)
    if arr.ndim != 1:
        raise ValueError(f"expected mono audio as a 1-D array, got shape {arr.shape}")
    return np.ascontiguousarray(arr)
