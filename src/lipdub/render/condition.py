"""Crop geometry, the drawn mouth-shape condition and the paste mask, all in crop pixels.

A crop is the square mouth box of a frame (``Avatar.boxes``) rounded to whole pixels and resized to
``size`` x ``size``. Landmarks go into crop coordinates with ``to_crop``; everything the renderer sees
is drawn there. The mask is deliberately tight (probes.md: masking the whole lower face makes the
network redraw collar and tie and blurs them): the convex hull of the outer lips and the chin,
grown by a small margin, so only what moves when speaking is regenerated.
"""

from __future__ import annotations

import cv2
import numpy as np

from lipdub.face import LIPS_INNER, LIPS_OUTER

# Chin points of the jaw contour (below the mouth, corner to corner); they move with the jaw.
CHIN_ARC = (365, 379, 378, 400, 377, 152, 148, 176, 149, 150, 136)
LIPS_OUTER_IDX = np.array(LIPS_OUTER)
LIPS_INNER_IDX = np.array(LIPS_INNER)
CHIN_IDX = np.array(CHIN_ARC)
# Points whose positions define a mouth shape (retrieval): lips and chin.
SHAPE_IDX = np.concatenate([LIPS_OUTER_IDX, LIPS_INNER_IDX, CHIN_IDX])
# Points around the mouth that (nearly) do not move when speaking (nose base, cheeks beside and above
# the mouth corners, jaw angles). Warping also pins these to the template's, so the warped mouth
# meets the template's face at the mask edge; pinning the crop border alone left a double jaw line.
CONTEXT_IDX = np.array([98, 2, 327, 206, 426, 207, 427, 192, 416, 288, 397, 58, 172])
WARP_IDX = np.concatenate([SHAPE_IDX, CONTEXT_IDX])

# Mask margins as fractions of the crop side: the hull is grown by MARGIN, then feathered over
# FEATHER (the hidden region is hull + MARGIN + FEATHER, so the soft edge stays inside it).
MARGIN = 0.035
FEATHER = 0.06


def int_box(box) -> tuple[int, int, int, int]:
    """A float box (x0, y0, x1, y1) as a whole-pixel square of at least 8 px."""
    x0, y0, x1, y1 = (float(v) for v in box[:4])
    side = max(8, int(round(max(x1 - x0, y1 - y0))))
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    ix, iy = int(round(cx - side / 2.0)), int(round(cy - side / 2.0))
    return ix, iy, ix + side, iy + side


def to_crop(points: np.ndarray, box, size: int) -> np.ndarray:
    """Pixel (x, y[, z]) points -> (x, y) in crop coordinates of ``int_box(box)`` at ``size``."""
    x0, y0, x1, _ = int_box(box)
    scale = size / float(x1 - x0)
    pts = np.asarray(points, dtype=np.float32)[..., :2]
    return (pts - np.array([x0, y0], np.float32)) * scale


def crop(frame: np.ndarray, box, size: int) -> np.ndarray:
    """The box region of ``frame`` resized to ``size`` x ``size`` (edge-replicated outside the frame)."""
    x0, y0, x1, y1 = int_box(box)
    h, w = frame.shape[:2]
    region = frame[max(0, y0):min(h, y1), max(0, x0):min(w, x1)]
    pad = (max(0, -y0), max(0, y1 - h), max(0, -x0), max(0, x1 - w))
    if any(pad):
        region = cv2.copyMakeBorder(region, *pad, cv2.BORDER_REPLICATE)
    interp = cv2.INTER_AREA if (x1 - x0) > size else cv2.INTER_LINEAR
    return cv2.resize(region, (size, size), interpolation=interp)


def shape_points(landmarks_crop: np.ndarray) -> np.ndarray:
    """The warp control points (lips, chin, then the still context) of a (478, 2) crop-space
    landmark array; the first ``len(SHAPE_IDX)`` are the mouth shape."""
    return landmarks_crop[WARP_IDX, :2]


def draw_condition(landmarks_crop: np.ndarray, size: int) -> np.ndarray:
    """(3, S, S) float32: lip contours, filled mouth opening, chin contour (0..1).

    Drawn at 4x sub-pixel precision so small mouth movements change the channels smoothly.
    """
    shift = 2
    k = float(1 << shift)
    thick = max(1, int(round(size / 96)))

    def pts(idx):
        return np.round(landmarks_crop[idx, :2] * k).astype(np.int32).reshape(-1, 1, 2)

    lips = np.zeros((size, size), np.uint8)
    cv2.polylines(lips, [pts(LIPS_OUTER_IDX)], True, 255, thick, cv2.LINE_AA, shift)
    cv2.polylines(lips, [pts(LIPS_INNER_IDX)], True, 255, thick, cv2.LINE_AA, shift)
    opening = np.zeros((size, size), np.uint8)
    cv2.fillPoly(opening, [pts(LIPS_INNER_IDX)], 255, cv2.LINE_AA, shift)
    jaw = np.zeros((size, size), np.uint8)
    # Only the chin arc: the motion model moves these points, the rest of the jaw stays put.
    cv2.polylines(jaw, [pts(CHIN_IDX)], False, 255, thick, cv2.LINE_AA, shift)
    return np.stack([lips, opening, jaw]).astype(np.float32) / 255.0


def _hull_mask(point_sets, size: int, grow: float) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    for landmarks_crop in point_sets:
        pts = np.concatenate([landmarks_crop[LIPS_OUTER_IDX, :2], landmarks_crop[CHIN_IDX, :2]])
        hull = cv2.convexHull(np.round(pts * 4).astype(np.int32))
        cv2.fillConvexPoly(mask, hull, 255, cv2.LINE_8, 2)
    r = max(1, int(round(grow * size)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    return cv2.dilate(mask, kernel)


def masks(point_sets, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(hidden, alpha) for one or more crop-space landmark sets (union of their mouths).

    ``hidden`` (uint8 0/1) is what the renderer does not see of the target; ``alpha`` (float32 0..1)
    is the feathered paste weight, exactly 0 wherever ``hidden`` is 0 and never touching the crop
    border, so pixels outside it are copied bit for bit.
    """
    core = _hull_mask(point_sets, size, MARGIN)
    feather = max(1, int(round(FEATHER * size)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * feather + 1, 2 * feather + 1))
    hidden = cv2.dilate(core, kernel)
    edge = max(1, size // 64)
    hidden[:edge] = 0
    hidden[-edge:] = 0
    hidden[:, :edge] = 0
    hidden[:, -edge:] = 0
    sigma = feather / 2.0
    alpha = cv2.GaussianBlur(core.astype(np.float32) / 255.0, (0, 0), sigma)
    alpha[hidden == 0] = 0.0
    # Nothing below half a grey level: those pixels would round back to the template anyway.
    alpha[alpha < 0.5 / 255.0] = 0.0
    return (hidden > 0).astype(np.uint8), alpha


def network_input(ref_warped: np.ndarray, target: np.ndarray, landmarks_crop: np.ndarray,
                  hidden: np.ndarray) -> np.ndarray:
    """(10, S, S) float32 input of ``MouthRenderer`` from uint8 crops and crop-space landmarks."""
    size = target.shape[0]
    keep = (1 - hidden).astype(np.float32)[None]
    ref = ref_warped.transpose(2, 0, 1).astype(np.float32) / 255.0
    tgt = target.transpose(2, 0, 1).astype(np.float32) / 255.0 * keep
    cond = draw_condition(landmarks_crop, size)
    return np.concatenate([ref, tgt, cond, 1.0 - keep]).astype(np.float32)
