"""Cheap colour matching of a rendered crop to its template: one shift per channel.

The shift is measured over a ring of pixels (the soft edge of a paste mask) and applied as one
saturating add, so a crop costs two masked sums and one add pass on uint8, instead of float
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
    mask = ring.view(np.uint8) if ring.dtype == bool else ring.astype(np.uint8, copy=False)
    n = cv2.countNonZero(mask)
    if n < MIN_RING:
        return None
    # Masked sums (a masked copy, then a plain sum): faster than cv2.mean with a mask, the same means.
    t = cv2.sumElems(cv2.bitwise_and(template, template, mask=mask))[:3]
    r = cv2.sumElems(cv2.bitwise_and(rendered, rendered, mask=mask))[:3]
    return np.clip(np.subtract(t, r) / n, -max_shift, max_shift)


def shifted(image: np.ndarray, shift: np.ndarray | None) -> np.ndarray:
    """uint8 ``image`` (H, W, 3) + ``shift`` per channel, rounded and clipped to 0..255.

    rint(v + s) is v + rint(s) for whole v (but at exact half-level ties), so this is one
    saturating add of the rounded shift: half the cost of a per-channel lookup table."""
    if shift is None:
        return image
    r = np.rint(np.asarray(shift, np.float64)[:3])
    return cv2.add(image, (float(r[0]), float(r[1]), float(r[2]), 0.0))
