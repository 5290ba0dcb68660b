"""Live audio input: PCM chunks as float32, and a file cut into chunks paced like a microphone's."""

from __future__ import annotations

import time
from typing import Iterator

import numpy as np

from lipdub.audio.timing import SAMPLE_RATE


def as_float_chunk(chunk) -> np.ndarray:
    """A PCM chunk (float32/float64 in [-1, 1], int16, or int16 little-endian bytes) as float32."""
    if isinstance(chunk, (bytes, bytearray, memoryview)):
        chunk = np.frombuffer(chunk, dtype="<i2")
    arr = np.asarray(chunk)
    if arr.ndim != 1:
        arr = arr.reshape(-1)
    if arr.dtype == np.int16:
        return arr.astype(np.float32) / 32768.0
    return arr.astype(np.float32, copy=False)


def paced_chunks(audio: np.ndarray, chunk_seconds: float = 0.02, realtime: bool = False,
                 start: float | None = None) -> Iterator[np.ndarray]:
    """Cut ``audio`` into chunks; with ``realtime`` each is released when it would have been
    captured (``start + end of chunk``), as a microphone would."""
    n = max(1, int(round(chunk_seconds * SAMPLE_RATE)))
    t0 = time.monotonic() if start is None else start
    for s in range(0, len(audio), n):
        if realtime:
            due = t0 + min(len(audio), s + n) / SAMPLE_RATE
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        yield audio[s:s + n]
