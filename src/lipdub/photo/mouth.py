"""Lip sync for a photo avatar: move lips and jaw by a mesh warp, paint the opened mouth.

Per output frame: the idle frame (its landmarks known exactly) is warped so its lip and jaw
points land on the motion model's target landmarks; only triangles touching a moved point are
resampled (the rings around the face stay put, so the jaw's motion fades out into the neck).
The warp alone would fill a newly opened mouth with stretched lip pixels, so the target's
inner-lip polygon is then painted with the interior model's output (canonical canvas mapped back
by the inverse similarity), blended with a feathered mask. Where the photo's own mouth was
already open (teeth showing), its warped real pixels are kept in proportion to how little the
opening grew: real teeth beat drawn ones.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from lipdub.face.mesh import INNER_LIP_PAIRS, JAW, LIPS_INNER, LIPS_OUTER, MOUTH_CORNERS
from lipdub.photo import interior as it
from lipdub.photo.meshwarp import N_MESH, FaceMesh, ring_points, warp


#: Points a mouth target may move (lips, jaw line); every other mesh point follows them smoothly.
DRIVEN = np.array(sorted(set(LIPS_OUTER) | set(LIPS_INNER) | set(JAW)))
#: Width (in mouth widths) of the Gaussian that carries the lips' motion to the skin around them.
SPREAD_SIGMA = 0.3


def spread_motion(src_lm: np.ndarray, dst_lm: np.ndarray) -> np.ndarray:
    """``dst_lm`` with the skin points between lips and jaw moved along with them.

    A mouth target moves only lip and jaw points; left where they were, the inner lip rings and
    chin points would be overrun by a moving lip and fold the mesh (dark slivers, torn edges).
    Driven points are split into the upper lip and the lower lip + jaw (mouth corners in both).
    A free point inside its side's driven points moves piecewise-affinely with them (barycentric
    in their triangulation, so it keeps its place between them and nothing folds); one outside
    takes a Gaussian-weighted mean of that side's displacements, damped with distance, so the
    motion fades out into the cheeks and nose. An upper-lip point never follows the jaw.
    """
    from scipy.spatial import Delaunay

    out = np.array(dst_lm, np.float32, copy=True)
    moved = np.abs(dst_lm[DRIVEN, :2] - src_lm[DRIVEN, :2]).max() if len(DRIVEN) else 0.0
    if not moved > 1e-3:
        return out
    width = float(np.linalg.norm(src_lm[MOUTH_CORNERS[0], :2] - src_lm[MOUTH_CORNERS[1], :2]))
    lower = lower_side(src_lm)
    corner_ids = set(MOUTH_CORNERS) | {78, 308}
    free = np.setdiff1d(np.arange(N_MESH), DRIVEN)
    for side in (False, True):
        group = np.array([i for i in DRIVEN if lower[i] == side or i in corner_ids])
        mine = free[lower[free] == side]
        if len(group) < 3 or len(mine) == 0:
            continue
        src_g = src_lm[group, :2].astype(np.float64)
        disp = dst_lm[group, :2].astype(np.float64) - src_g
        tri = Delaunay(src_g)
        pts = src_lm[mine, :2].astype(np.float64)
        simplex = tri.find_simplex(pts)
        inside = simplex >= 0
        if inside.any():
            t = tri.transform[simplex[inside]]
            b = np.einsum("nij,nj->ni", t[:, :2], pts[inside] - t[:, 2])
            bary = np.concatenate([b, 1 - b.sum(1, keepdims=True)], axis=1)
            verts = tri.simplices[simplex[inside]]
            out[mine[inside], :2] = (pts[inside] + (bary[..., None] * disp[verts]).sum(1)).astype(np.float32)
        rest = mine[~inside]
        if len(rest):
            d2 = ((src_lm[rest, None, :2] - src_g[None]) ** 2).sum(-1)
            # The upper lip's motion fades within the philtrum; the jaw's reaches the cheeks.
            sigma2 = ((SPREAD_SIGMA if side else 0.5 * SPREAD_SIGMA) * width) ** 2
            # Cut at 3 sigma: the eyes and brows stay exactly where they were.
            k = np.where(d2 < 9 * sigma2, np.exp(-d2 / (2 * sigma2)), 0.0)
            out[rest, :2] = src_lm[rest, :2] + (k @ disp / (k.sum(1, keepdims=True) + 0.15)).astype(np.float32)
    return out


def lower_side(lm: np.ndarray) -> np.ndarray:
    """Bool per point: below the mouth's parting line (what a dropping jaw carries).

    The parting line is the middle of the inner-lip opening across the mouth and, beyond the
    corners, the straight continuation through the corner; a smile's raised corners do not put
    the upper lip's centre on the wrong side.
    """
    a, b = lm[MOUTH_CORNERS[0], :2].astype(np.float64), lm[MOUTH_CORNERS[1], :2].astype(np.float64)
    ex = (b - a) / max(float(np.linalg.norm(b - a)), 1e-6)
    ey = np.array([-ex[1], ex[0]])
    if ey[1] < 0:
        ey = -ey
    rel = lm[:, :2].astype(np.float64) - a
    u, v = rel @ ex, rel @ ey
    upper = [78] + list(LIPS_INNER[1:10]) + [308]
    lower = [78] + list(LIPS_INNER[:10:-1]) + [308]
    uu, vu = u[upper], v[upper]
    ul, vl = u[lower], v[lower]
    ou, ol = np.argsort(uu), np.argsort(ul)
    mid = (np.interp(u, uu[ou], vu[ou]) + np.interp(u, ul[ol], vl[ol])) / 2
    side = v > mid
    side[list(LIPS_INNER[1:10])] = False
    side[list(LIPS_INNER[11:])] = True
    return side


def _gap(lm: np.ndarray) -> float:
    """Mean inner-lip gap in pixels (the numerator of ``mouth_aperture``)."""
    up = lm[[u for u, _ in INNER_LIP_PAIRS], :2]
    lo = lm[[d for _, d in INNER_LIP_PAIRS], :2]
    return float(np.linalg.norm(up - lo, axis=1).mean())


class PhotoMouthRenderer:
    """Renders the mouth of a photo avatar's frames to target landmarks.

    ``rest_landmarks``: the avatar's first frame (or the photo's) landmarks; the mesh topology is
    built from them once. ``interior``: an ``InteriorModel`` (default: ``load_interior()``).
    ``own_teeth``: where the photo's mouth shows teeth, reuse them (colour and pixels).
    """

    def __init__(self, rest_landmarks: np.ndarray, interior: it.InteriorModel | None = None,
                 feather: float = 0.8, own_teeth: bool = True):
        self.mesh = FaceMesh(np.asarray(rest_landmarks, np.float32))
        self.interior = interior if interior is not None else it.load_interior()
        self.feather = feather
        self.own_teeth = own_teeth

    @classmethod
    def for_avatar(cls, avatar, interior: it.InteriorModel | None = None) -> "PhotoMouthRenderer":
        """The renderer of a photo avatar (``manifest["kind"] == "photo"``) or an idle template."""
        return cls(np.asarray(avatar.landmarks)[0], interior)

    def reset(self) -> None:
        """Nothing carries over between frames here (the U-Net renderer's retrieval does)."""

    def render(self, frame: np.ndarray, frame_landmarks: np.ndarray,
               target_landmarks: np.ndarray) -> np.ndarray:
        """One frame; see ``render_chunk``."""
        return self.render_chunk([frame], frame_landmarks[None], target_landmarks[None])[0]

    def render_chunk(self, frames: Sequence[np.ndarray], frame_landmarks: np.ndarray,
                     target_landmarks: np.ndarray) -> list[np.ndarray]:
        """Frames (RGB uint8, each the template frame under that output frame) with their mouths
        moved to ``target_landmarks`` ``(B, 478, 3)``; ``frame_landmarks`` are the frames' own.
        New arrays are returned; the inputs are not modified. The interior model runs batched.
        """
        frame_landmarks = np.asarray(frame_landmarks, np.float32)
        target_landmarks = np.asarray(target_landmarks, np.float32)
        outs, masks, colours, mats, opac, scales = [], [], [], [], [], []
        for frame, src_lm, dst_lm in zip(frames, frame_landmarks, target_landmarks):
            ring = ring_points(src_lm, self.mesh.rings)
            src = self.mesh.points(src_lm, ring)
            dst = self.mesh.points(spread_motion(src_lm, dst_lm), ring)
            moved = np.abs(dst - src).max(axis=1) > 1e-2
            out = warp(frame, src, dst, self.mesh.triangles, moved=moved) if moved.any() else frame.copy()
            outs.append(out)
            s = self.interior.scale_for(dst_lm)
            m = it.canonical_matrix(dst_lm, s)
            mats.append(m)
            scales.append(s)
            masks.append(it.opening_mask(dst_lm, m, (it.CANVAS_H * s, it.CANVAS_W * s)))
            colours.append(it.mouth_colours(frame, src_lm))
            # How much of the opening is new: all of it for a closed-mouth photo, little when the
            # photo's mouth was already as open.
            grow = _gap(dst_lm) - _gap(src_lm)
            opac.append(float(np.clip(grow / max(_gap(dst_lm), 1e-6) * 3.0, 0.0, 1.0)))
        if any(o > 0 for o in opac):
            own = [photo_teeth(f, lm) if self.own_teeth and o > 0 else None
                   for f, lm, o in zip(frames, frame_landmarks, opac)]
            teeth = [None if t is None else t[0] for t in own]
            canvases = self.interior.paint(masks, np.array(colours), scales, teeth)
            for k, (out, dst_lm, canvas, m, o) in enumerate(zip(outs, target_landmarks, canvases, mats, opac)):
                if o <= 0:
                    continue
                if own[k] is not None:
                    # The photo's real teeth, moved with their jaw (not stretched), over the drawn
                    # interior: the whole opening can then be pasted.
                    canvas = paste_own_teeth(canvas, frames[k], frame_landmarks[k], masks[k], scales[k])
                    o = 1.0
                self._paste(out, dst_lm, canvas, m, o)
        return outs

    def _paste(self, out: np.ndarray, lm: np.ndarray, canvas: np.ndarray, matrix: np.ndarray,
               opacity: float) -> None:
        """Blend the canvas interior into ``out`` inside the target's inner-lip polygon, in place."""
        poly = lm[list(LIPS_INNER), :2]
        h, w = out.shape[:2]
        x0, y0 = np.maximum(np.floor(poly.min(0)).astype(int) - 2, 0)
        x1, y1 = np.minimum(np.ceil(poly.max(0)).astype(int) + 3, [w, h])
        if x1 - x0 < 2 or y1 - y0 < 2:
            return
        # Canvas -> this patch: invert the frame -> canvas similarity, then shift to the patch.
        inv = cv2.invertAffineTransform(matrix)
        inv[:, 2] -= [x0, y0]
        colour = cv2.warpAffine(np.clip(canvas * 255.0, 0, 255).astype(np.float32), inv,
                                (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REPLICATE)
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(mask, [np.round((poly - [x0, y0]) * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
        alpha = mask.astype(np.float32) / 255.0
        if self.feather > 0:
            alpha = cv2.GaussianBlur(alpha, (0, 0), self.feather) * (alpha > 0)
        alpha = (alpha * opacity)[..., None]
        patch = out[y0:y1, x0:x1].astype(np.float32)
        out[y0:y1, x0:x1] = np.clip(patch * (1 - alpha) + colour * alpha + 0.5, 0, 255).astype(np.uint8)


def _teeth_pixels(frame: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """RGB 0..1 pixels ``(N, 3)`` inside the opening that look like teeth: clearly less saturated
    than the lips and about as light as the skin (the colour model's own definition)."""
    poly = landmarks[list(LIPS_INNER), :2]
    x0, y0 = np.maximum(np.floor(poly.min(0)).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(poly.max(0)).astype(int) + 1, [frame.shape[1], frame.shape[0]])
    if x1 - x0 < 3 or y1 - y0 < 2:
        return np.zeros((0, 3), np.float32)
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(mask, [np.round(poly - [x0, y0]).astype(np.int32)], 1)
    px = frame[y0:y1, x0:x1][mask > 0].astype(np.float32) / 255.0
    if len(px) == 0:
        return px
    lab = cv2.cvtColor(px[None], cv2.COLOR_RGB2LAB)[0]
    col = it.mouth_colours(frame, landmarks)
    ref = cv2.cvtColor(col.reshape(1, 2, 3), cv2.COLOR_RGB2LAB)[0]
    lip_c = float(np.hypot(ref[0, 1], ref[0, 2]))
    keep = (np.hypot(lab[:, 1], lab[:, 2]) < 0.6 * lip_c) & (lab[:, 0] > 0.75 * ref[1, 0])
    return px[keep]


def photo_teeth(frame: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray] | None:
    """(mean teeth RGB,) when the photo's own opening shows teeth, else None."""
    if _gap(landmarks) < 2.0:
        return None
    px = _teeth_pixels(frame, landmarks)
    if len(px) < 12:
        return None
    return (np.median(px, axis=0),)


def paste_own_teeth(canvas: np.ndarray, frame: np.ndarray, src_lm: np.ndarray, dst_mask: np.ndarray,
                    scale: int) -> np.ndarray:
    """``canvas`` (the target opening, drawn) with the photo's own opening laid over it: its upper
    half moved with the upper lip, its lower half with the lower lip, column by column; what
    opens between them stays drawn (throat, tongue). Upper teeth stay with the upper jaw and the
    lower teeth move with the chin, and nothing is stretched."""
    from lipdub.photo.interior_layers import opening_profile

    h, w = dst_mask.shape
    m = it.canonical_matrix(src_lm, scale)
    src = cv2.warpAffine(frame, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    src_mask = it.opening_mask(src_lm, m, (h, w))
    top_s, bot_s, open_s = opening_profile(src_mask)
    # The opening's own rim is the inner lip's dark edge, not teeth: leave it behind.
    src_mask = cv2.erode(src_mask, np.ones((3, 3), np.uint8), iterations=max(1, scale // 2))
    top_d, bot_d, open_d = opening_profile(dst_mask)
    both = open_s & open_d
    if not both.any():
        return canvas
    sigma = 1.5 * scale
    up = cv2.GaussianBlur(np.where(both, top_d - top_s, 0)[None].astype(np.float32), (0, 0), sigma)[0]
    down = cv2.GaussianBlur(np.where(both, bot_d - bot_s, 0)[None].astype(np.float32), (0, 0), sigma)[0]
    mid = (top_s + bot_s) / 2
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    out = canvas.astype(np.float32)
    srcf = src.astype(np.float32) / 255.0
    for shift, upper in ((up, True), (down, False)):
        map_y = ys - shift[None]
        half = (map_y <= mid[None]) if upper else (map_y > mid[None])
        a = cv2.remap(src_mask, xs, map_y, cv2.INTER_LINEAR, borderValue=0) * half * both[None]
        a = a * dst_mask
        layer = cv2.remap(srcf, xs, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        out = out * (1 - a[..., None]) + layer * a[..., None]
    return out


def render_photo_mouth(frame: np.ndarray, frame_landmarks: np.ndarray, target_landmarks: np.ndarray,
                       renderer: PhotoMouthRenderer | None = None) -> np.ndarray:
    """``frame`` with its mouth moved to ``target_landmarks`` (478, 3); a one-off convenience."""
    renderer = renderer or PhotoMouthRenderer(frame_landmarks)
    return renderer.render(frame, frame_landmarks, target_landmarks)


def open_mouth_landmarks(landmarks: np.ndarray, aperture: float) -> np.ndarray:
    """Landmarks with the mouth opened to ``aperture`` (inner gap / mouth width), for tests and
    benchmarks without the motion model: the lower lip and jaw drop, the upper lip lifts a little,
    with the same share for each point as its distance from the corners allows."""
    lm = np.array(landmarks, np.float32, copy=True)
    width = float(np.linalg.norm(lm[MOUTH_CORNERS[0], :2] - lm[MOUTH_CORNERS[1], :2]))
    extra = max(aperture * width - _gap(lm), 0.0)
    a, b = lm[MOUTH_CORNERS[0], :2], lm[MOUTH_CORNERS[1], :2]
    ex = (b - a) / max(width, 1e-6)
    down = np.array([-ex[1], ex[0]]) if ex[0] >= 0 else np.array([ex[1], -ex[0]])
    if down[1] < 0:
        down = -down
    rel = lm[:, :2] - (a + b) / 2
    u = rel @ ex / (width / 2)          # -1..1 across the mouth
    v = rel @ down / width              # below the corner line > 0
    across = np.clip(1 - u ** 2, 0, 1)  # 0 at the corners, 1 in the middle
    lower = lower_side(lm)
    # Below the mouth the whole jaw drops (fading far down the neck); above it only the upper lip.
    share = np.where(lower, 0.85 * np.where(np.abs(u) < 1.6, np.clip(1.6 - np.abs(u), 0, 1), 0)
                     * np.clip(1.0 - (v - 0.1) / 2.5, 0, 1) * np.maximum(across, 0.35 * (v > 0.2)), 0.0)
    upper_lip = (~lower) & (np.abs(u) < 1.0) & (v > -0.45)
    share = np.where(upper_lip, -0.15 * across * np.clip(1 + v / 0.45, 0, 1), share)
    lm[:, :2] += (extra * share)[:, None] * down[None]
    return lm
