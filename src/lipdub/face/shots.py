"""Cuts in edited footage: where one shot ends and the next begins.

The test is PySceneDetect's content score (the mean change of hue, saturation and lightness
between consecutive frames, 0..255), computed here on a 64x64 thumbnail: a cut changes most of
the picture at once (scores of 40-120), while head motion, speech and camera drift stay far
below (typically < 10). PySceneDetect itself is not used: it requires ``opencv-python``, which
would overwrite the ``opencv-contrib-python`` that MediaPipe brings. A cut that this misses (a
slow dissolve) is still caught downstream: a face that jumps further than its own size between
two frames starts a new track (``lipdub.face.people``).
"""

from __future__ import annotations

import cv2
import numpy as np

#: Content score above which two consecutive frames belong to different shots (PySceneDetect's
#: ContentDetector default is 27 on the same scale).
CUT_SCORE = 27.0
THUMB = 64


def signature(frame: np.ndarray) -> np.ndarray:
    """A small HSV thumbnail of an RGB frame, float32 (64, 64, 3), hue scaled to 0..255."""
    thumb = cv2.resize(frame, (THUMB, THUMB), interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(thumb, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] *= 255.0 / 180.0
    return hsv


def content_score(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute change of hue (circular), saturation and value between two signatures."""
    d = np.abs(a - b)
    d[..., 0] = np.minimum(d[..., 0], 255.0 - d[..., 0])
    return float(d.mean())


class CutDetector:
    """Feed frames in order; ``feed`` says whether a new shot starts at that frame."""

    def __init__(self, threshold: float = CUT_SCORE):
        self.threshold = threshold
        self._previous: np.ndarray | None = None
        self.scores: list[float] = []

    def feed(self, frame: np.ndarray) -> bool:
        sig = signature(frame)
        score = 0.0 if self._previous is None else content_score(self._previous, sig)
        self._previous = sig
        self.scores.append(score)
        return score > self.threshold


def shot_ids(cut_before: np.ndarray) -> np.ndarray:
    """``int32 (N,)`` shot number of each frame from a boolean "a shot starts here" array."""
    starts = np.asarray(cut_before, bool).copy()
    if len(starts):
        starts[0] = False
    return np.cumsum(starts).astype(np.int32)
