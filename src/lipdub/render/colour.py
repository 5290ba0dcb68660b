"""Cheap colour matching of a rendered crop to its template: one shift per channel.

The shift is measured over a ring of pixels (the soft edge of a paste mask) and applied through a
lookup table, so a crop costs two masked means and one table pass on uint8, instead of float
copies of the whole crop (which took ~1 ms per 320 px crop, each time it was done).
"""

from __future__ import annotations

import cv2
import numpy as np

# Never shift a channel by more than this (0..255): a larger gap is content, not lighting.
MAX_SHIFT = 12.0
# Fewer ring pixels than this measure noise, not lighting.
MIN_RING = 16


def ring_shift(rendered: np.ndarray, template: np.ndarray, ring: np.ndarray,
               max_shift: float = MAX_SHIFT) -> np.ndarray | None:
    """(3,) float: template mean minus rendered mean over the boolean/0-1 ``ring`` (both crops
    uint8 (S, S, 3)), clipped to ``max_shift``; None when the ring is too small to say."""
    mask = ring.astype(np.uint8, copy=False)
    if cv2.countNonZero(mask) < MIN_RING:
        return None
    shift = np.subtract(cv2.mean(template, mask)[:3], cv2.mean(rendered, mask)[:3])
    return np.clip(shift, -max_shift, max_shift)


def shifted(image: np.ndarray, shift: np.ndarray | None) -> np.ndarray:
    """uint8 ``image`` (H, W, 3) + ``shift`` per channel, rounded and clipped to 0..255."""
    if shift is None:
        return image
    table = np.clip(np.rint(np.arange(256, dtype=np.float64)[:, None] + np.asarray(shift)[None, :3]),
                    0, 255).astype(np.uint8)[:, None, :]
    return cv2.LUT(image, table)
