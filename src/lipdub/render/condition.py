"""Crop geometry, the drawn mouth-shape condition and the paste mask, all in crop pixels.

A crop is the square mouth box of a frame (``Avatar.boxes``) rounded to whole pixels and resized to
``size`` x ``size``. Landmarks go into crop coordinates with ``to_crop``; everything the renderer sees
is drawn there. The mask is deliberately tight (probes.md: masking the whole lower face makes the
network redraw collar and tie and blurs them): the convex hull of the outer lips and the chin,
grown by a small margin, so only what moves when speaking is regenerated. When the wanted chin
differs from the template's, the mask also covers the band of neck that moves with the jaw
(``neck_points``), and below the target chin line (``face_weight``) the renderer shows the template
itself, bent to the new jaw, instead of the reference frame's neck and collar.
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

# Below the jaw the rendered crop is the *template* itself, bent so its jaw line follows the target
# chin (``warp.follow_jaw``): the reference frame's neck and collar never sit where the template's are
# (the crop box follows the face, the collar follows the body), and blending the two drew a grey
# second jaw line over the collar whenever the wanted chin differed from the template's. The neck
# is stretched (or compressed) between the chin and pins NECK_REACH chin displacements (plus
# NECK_GAP of the crop side) below the lower of the two chins, beyond which nothing moves.
NECK_REACH = 2.5
NECK_GAP = 0.03
# The seam between the reference's face and the template's jaw/neck: JAW_SEAM of the crop side
# above the target chin points (so the visible jaw edge and the shadow under it are the template's,
# one edge only), soft over about JAW_SOFT.
JAW_SEAM = 0.015
JAW_SOFT = 0.012

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


def crop(frame: np.ndarray, box, size: int, fast: bool = False) -> np.ndarray:
    """The box region of ``frame`` resized to ``size`` x ``size`` (edge-replicated outside the frame).

    ``fast``: bilinear, not area, when shrinking by less than 2x. For a crop that is pasted back
    at the box's own resolution (the template under a generated mouth): OpenCV's area filter
    at a non-integer ratio cost 0.9 ms a 495 -> 320 px crop, the largest per-frame cost of a
    close-up, bilinear 0.13 ms."""
    x0, y0, x1, y1 = int_box(box)
    h, w = frame.shape[:2]
    region = frame[max(0, y0):min(h, y1), max(0, x0):min(w, x1)]
    pad = (max(0, -y0), max(0, y1 - h), max(0, -x0), max(0, x1 - w))
    if any(pad):
        region = cv2.copyMakeBorder(region, *pad, cv2.BORDER_REPLICATE)
    shrink = (x1 - x0) / float(size)
    interp = cv2.INTER_AREA if shrink > 1 and not (fast and shrink < 2) else cv2.INTER_LINEAR
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


def down_direction(landmarks_crop: np.ndarray) -> np.ndarray:
    """Unit (2,) vector from the lips towards the chin: "down" in the face's own frame (head roll)."""
    d = landmarks_crop[CHIN_IDX, :2].mean(0) - landmarks_crop[LIPS_OUTER_IDX, :2].mean(0)
    n = float(np.hypot(*d))
    return (d / n).astype(np.float32) if n > 1e-6 else np.array([0.0, 1.0], np.float32)


def neck_points(own_crop: np.ndarray, target_crop: np.ndarray, size: int):
    """(pins, band), each (len(CHIN_IDX), 2) crop points below the chin for a template mouth
    ``own_crop`` redrawn as ``target_crop`` (both (478, 2+) crop-space landmarks).

    Per chin point, with d its displacement between the two: ``band`` is the lower of the two
    chins pushed d further down (the neck that moves with the jaw, which the paste mask must
    cover) and ``pins`` lie NECK_REACH * d + NECK_GAP * size below the lower chin (still neck
    or collar, which must not move). Equal mouths give band == the chin and no motion."""
    own, tgt = own_crop[CHIN_IDX, :2], target_crop[CHIN_IDX, :2]
    down = down_direction(own_crop)
    lower = np.where(((own @ down) >= (tgt @ down))[:, None], own, tgt)
    disp = np.hypot(*(own - tgt).T).astype(np.float32)[:, None]
    band = lower + down * disp
    pins = lower + down * (NECK_REACH * disp + NECK_GAP * size)
    return pins.astype(np.float32), band.astype(np.float32)


def face_weight(target_crop: np.ndarray, size: int, half: bool = False) -> np.ndarray:
    """(S, S) float32 weight, 1 inside the face above the target's chin line, 0 below it.

    The region is bounded by the chin arc, continued beyond its ends along their direction (up
    the jaw), pulled JAW_SEAM inside the face and softened over JAW_SOFT.

    ``half``: blurred at half the side (drawn at S, area-halved, blurred, resized back). The
    weight is smooth (its edge is JAW_SOFT of the side soft), so this moves it by < 1 % and costs
    a third (the blur at 320 px was 0.4 ms a frame)."""
    pts = target_crop[CHIN_IDX, :2].astype(np.float64)
    down = down_direction(target_crop).astype(np.float64)
    pts = pts - down * JAW_SEAM * size
    far = 3.0 * size

    def extend(end, prev):
        t = end - prev
        n = np.hypot(*t)
        t = t / n if n > 1e-6 else -down
        return end + t * far

    e0, e1 = extend(pts[0], pts[1]), extend(pts[-1], pts[-2])
    poly = np.concatenate([[e0 - down * far], [e0], pts, [e1], [e1 - down * far]])
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [np.round(poly * 4).astype(np.int32)], 255, cv2.LINE_AA, 2)
    sigma = max(0.5, JAW_SOFT * size)
    if half and size >= 64:
        small = cv2.resize(mask, ((size + 1) // 2, (size + 1) // 2), interpolation=cv2.INTER_AREA)
        small = cv2.GaussianBlur(small.astype(np.float32) / 255.0, (0, 0), sigma * small.shape[0] / size)
        return cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR)
    return cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), sigma)


def _hull_mask(point_sets, size: int, grow: float, extra=()) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    hulls = [np.concatenate([lm[LIPS_OUTER_IDX, :2], lm[CHIN_IDX, :2]]) for lm in point_sets]
    for pts in list(hulls) + [np.asarray(e, np.float32)[:, :2] for e in extra]:
        hull = cv2.convexHull(np.round(pts * 4).astype(np.int32))
        cv2.fillConvexPoly(mask, hull, 255, cv2.LINE_8, 2)
    r = max(1, int(round(grow * size)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    return cv2.dilate(mask, kernel)


def masks(point_sets, size: int, extra=()) -> tuple[np.ndarray, np.ndarray]:
    """(hidden, alpha) for one or more crop-space landmark sets (union of their mouths), plus the
    convex hulls of any ``extra`` (K, 2) point sets (the neck band that follows the jaw).

    ``hidden`` (uint8 0/1) is what the renderer does not see of the target; ``alpha`` (float32 0..1)
    is the feathered paste weight, exactly 0 wherever ``hidden`` is 0 and never touching the crop
    border, so pixels outside it are copied bit for bit.
    """
    core = _hull_mask(point_sets, size, MARGIN, extra)
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
