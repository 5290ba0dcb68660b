"""Paste-back: put a rendered mouth crop into its template frame with no visible box or seam.

The renderer works on a square crop (``render.condition.crop``); its paste weight ``alpha`` is the
feathered lips-and-chin hull, exactly 0 away from the mouth and at the crop border. Here the crop's
colours are matched to the template just inside the mask edge (compression and lighting drift
between the reference frame and the template), then crop and weight are resized to the box and
blended. Pixels where the weight is 0 are copied, bit for bit, and only the weight's bounding box is
touched, so a 720p frame costs a few small array operations.
"""

from __future__ import annotations

import cv2
import numpy as np

from lipdub.render.blend import blend_u8, weight_u8
from lipdub.render.colour import MAX_SHIFT, ring_shift, shifted
from lipdub.render.condition import int_box

# The colour-matching ring: paste weights in this range lie in the soft edge of the mask, where
# the result should agree with the template.
RING = (0.02, 0.5)
__all__ = ["MAX_SHIFT", "RING", "colour_shift", "match_colour", "paste", "paste_mask"]


def colour_shift(rendered: np.ndarray, template: np.ndarray, alpha: np.ndarray) -> np.ndarray | None:
    """(3,) per-channel shift that makes ``rendered``'s mean over the mask's soft edge equal the
    template crop's there (None: too few edge pixels to measure)."""
    return ring_shift(rendered, template, (alpha > RING[0]) & (alpha < RING[1]), MAX_SHIFT)


def match_colour(rendered: np.ndarray, template: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``rendered`` (S, S, 3) uint8 shifted per channel so its mean over the mask's soft edge equals
    the template crop's there. Returns float32."""
    shift = colour_shift(rendered, template, alpha)
    out = rendered.astype(np.float32)
    return out if shift is None else out + shift.astype(np.float32)


def paste(frame: np.ndarray, rendered: np.ndarray, alpha: np.ndarray, box,
          template_crop: np.ndarray | None = None, inplace: bool = False) -> np.ndarray:
    """Blend the crop ``rendered`` (R, R, 3) into ``frame`` at ``box`` with weight ``alpha`` (S, S).

    R may be the crop size or the box's own side (a full-resolution render). With
    ``template_crop`` (the frame's crop at R), colours are matched first.
    Returns the frame (a copy unless ``inplace``); pixels with zero weight keep their exact value.
    """
    out = frame if inplace else frame.copy()
    x0, y0, x1, _ = int_box(box)
    side = x1 - x0
    size = alpha.shape[0]
    # Only the bounding box of the nonzero weight (plus a pixel for resampling) is worked on.
    rows = np.flatnonzero(alpha.any(axis=1))
    if rows.size == 0:
        return out
    cols = np.flatnonzero(alpha.any(axis=0))
    if template_crop is not None:  # uint8 throughout: one saturating add, uint8 resizes
        colour = _matched_in_window(rendered, template_crop, alpha, rows, cols, side)
    else:
        colour = rendered
    scale = side / float(size)
    bx0 = max(0, int(np.floor(cols[0] * scale)) - 2)
    by0 = max(0, int(np.floor(rows[0] * scale)) - 2)
    bx1 = min(side, int(np.ceil((cols[-1] + 1) * scale)) + 2)
    by1 = min(side, int(np.ceil((rows[-1] + 1) * scale)) + 2)
    # Resize the whole crop to the box (cheap at crop size), then cut the working window.
    interp = cv2.INTER_LINEAR if side >= size else cv2.INTER_AREA
    if colour.shape[0] != side:
        colour = cv2.resize(colour, (side, side), interpolation=cv2.INTER_LINEAR
                            if side >= colour.shape[0] else cv2.INTER_AREA)
    big = colour[by0:by1, bx0:bx1]
    # 8-bit weights: below half a level they round to 0 (the template pixel, bit for bit).
    weight = weight_u8(cv2.resize(alpha.astype(np.float32, copy=False), (side, side),
                                  interpolation=interp)[by0:by1, bx0:bx1])

    h, w = out.shape[:2]
    fx0, fy0 = x0 + bx0, y0 + by0
    fx1, fy1 = min(w, x0 + bx1), min(h, y0 + by1)
    cx0, cy0 = max(0, -fx0), max(0, -fy0)
    fx0, fy0 = max(0, fx0), max(0, fy0)
    if fx1 <= fx0 or fy1 <= fy0:
        return out
    big = big[cy0:cy0 + fy1 - fy0, cx0:cx0 + fx1 - fx0]
    weight = weight[cy0:cy0 + fy1 - fy0, cx0:cx0 + fx1 - fx0]
    # region * (1 - w) + big * w in uint8 (within a level of a float blend at a third of
    # cv2.blendLinear's cost); where w == 0 the result is the template pixel exactly.
    out[fy0:fy1, fx0:fx1] = blend_u8(big, out[fy0:fy1, fx0:fx1], np.ascontiguousarray(weight))
    return out


def _matched_in_window(rendered: np.ndarray, template_crop: np.ndarray, alpha: np.ndarray,
                       rows: np.ndarray, cols: np.ndarray, side: int) -> np.ndarray:
    """``rendered`` colour-matched as ``colour_shift`` does, measured and shifted only inside the
    window of the crop that the paste reads: the weight's nonzero rows/cols at the crop's
    resolution, plus the reach of the bilinear taps (weight upsampled here, crop resized to the
    box by ``paste``). The ring lies inside it, so the shift is the whole crop's."""
    r = rendered.shape[0]
    k = r / float(alpha.shape[0])
    m = int(np.ceil(k)) + int(np.ceil(r / float(side))) + 3
    y0, y1 = max(0, int(np.floor(rows[0] * k)) - m), min(r, int(np.ceil((rows[-1] + 1) * k)) + m)
    x0, x1 = max(0, int(np.floor(cols[0] * k)) - m), min(r, int(np.ceil((cols[-1] + 1) * k)) + m)
    a_r = alpha if r == alpha.shape[0] else cv2.resize(alpha, (r, r), interpolation=cv2.INTER_LINEAR)
    a_r = a_r[y0:y1, x0:x1]
    window = rendered[y0:y1, x0:x1]
    shift = ring_shift(window, template_crop[y0:y1, x0:x1], (a_r > RING[0]) & (a_r < RING[1]), MAX_SHIFT)
    if shift is None:
        return rendered
    out = rendered.copy()
    out[y0:y1, x0:x1] = shifted(window, shift)
    return out


def paste_mask(shape: tuple[int, int], alpha: np.ndarray, box) -> np.ndarray:
    """Boolean (H, W): the frame pixels ``paste`` may change for this crop weight and box."""
    h, w = shape[:2]
    x0, y0, x1, _ = int_box(box)
    side = x1 - x0
    interp = cv2.INTER_LINEAR if side >= alpha.shape[0] else cv2.INTER_AREA
    weight = cv2.resize(alpha.astype(np.float32), (side, side), interpolation=interp) >= 0.5 / 255.0
    mask = np.zeros((h, w), bool)
    fx0, fy0, fx1, fy1 = max(0, x0), max(0, y0), min(w, x0 + side), min(h, y0 + side)
    mask[fy0:fy1, fx0:fx1] = weight[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0]
    return mask
