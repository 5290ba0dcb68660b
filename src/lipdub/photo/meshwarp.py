"""Landmark-driven piecewise-affine warp of a face, fading into a still background.

The mesh is MediaPipe's own face tessellation (its triangles follow the lip and lid contours, so
opening the mouth or closing an eye never folds a triangle over), with the holes it leaves at the
mouth and eyes filled by strips between facing upper/lower contour points, plus rings of extra
points around the face that the caller can move less (or not at all): the warp then fades out
smoothly and every pixel beyond the outer ring is copied bit for bit.

The warp is backward: each output pixel is given the triangle of the *moved* mesh it falls in
(rasterised once per frame into a label image over the mesh's bounding box only) and is sampled
through that triangle's affine map back into the source image by a single ``cv2.remap``.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from lipdub.face.mesh import FACE_OVAL, LEFT_EYE, LIPS_INNER, RIGHT_EYE

#: Points of the face mesh proper (the 10 iris points are left out: they sit inside the eye strips
#: and would only make slivers).
N_MESH = 468
#: Default ring scales (about the face-oval centre) of the extra points around the face.
DEFAULT_RINGS = (1.3, 1.75, 2.4)
#: Fixed sub-pixel precision for rasterising triangles (cv2 ``shift``).
_SHIFT = 4


def _strip(upper: list[int], lower: list[int]) -> list[tuple[int, int, int]]:
    """Triangles between two point chains of the same length that share nothing (a ladder)."""
    tris = []
    for k in range(len(upper) - 1):
        tris.append((upper[k], upper[k + 1], lower[k]))
        tris.append((upper[k + 1], lower[k + 1], lower[k]))
    return tris


def ring_halves(ring: tuple[int, ...]) -> tuple[list[int], list[int]]:
    """A closed contour (corner, one side..., other corner, other side...) as two chains from the
    first corner to the opposite one, for laddering."""
    n = len(ring)
    half = n // 2
    first = list(ring[:half + 1])                      # corner -> ... -> opposite corner
    second = [ring[0]] + list(reversed(ring[half + 1:])) + [ring[half]]
    return first, second


@lru_cache(maxsize=1)
def face_triangles() -> np.ndarray:
    """``int32 (T, 3)`` triangles over the 468 mesh points, mouth and eye openings included."""
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_TESSELATION

    adjacent: dict[int, set[int]] = {}
    for a, b in FACEMESH_TESSELATION:
        adjacent.setdefault(a, set()).add(b)
        adjacent.setdefault(b, set()).add(a)
    tris = set()
    for a, b in FACEMESH_TESSELATION:
        for c in adjacent[a] & adjacent[b]:
            tris.add(tuple(sorted((a, b, c))))
    for ring in (LIPS_INNER, RIGHT_EYE, LEFT_EYE):
        upper, lower = ring_halves(ring)
        tris.update(tuple(sorted(t)) for t in _strip(upper, lower))
    return np.array(sorted(tris), np.int32)


def oval_centre(landmarks: np.ndarray) -> np.ndarray:
    return landmarks[list(FACE_OVAL), :2].mean(axis=0)


def ring_points(landmarks: np.ndarray, rings=DEFAULT_RINGS) -> np.ndarray:
    """Extra points ``(len(rings) * 36, 2)``: the face oval scaled about its centre by each factor.

    Rings follow the face's own shape, so the fade band is even all round. Each ring keeps every
    oval point for the first ring and every other one further out (larger, smoother triangles).
    """
    oval = landmarks[list(FACE_OVAL), :2].astype(np.float64)
    centre = oval.mean(axis=0)
    out = []
    for i, s in enumerate(rings):
        pts = centre + (oval - centre) * s
        out.append(pts if i == 0 else pts[::2])
    return np.concatenate(out).astype(np.float32)


class FaceMesh:
    """Triangulation of one face's rest pose: 468 mesh points + outer rings.

    ``points(landmarks, ring_pts)`` lays out a point array in mesh order; the triangles index it.
    """

    def __init__(self, landmarks: np.ndarray, rings=DEFAULT_RINGS):
        from scipy.spatial import Delaunay

        lm = np.asarray(landmarks, np.float32)
        if lm.shape[0] < N_MESH:
            raise ValueError(f"expected (478, 2|3) landmarks, got {lm.shape}")
        self.rings = tuple(rings)
        ring = ring_points(lm, self.rings)
        self.n_ring = len(ring)
        face = face_triangles()
        # Outside the oval: Delaunay over the oval and the rings, keeping triangles outside the oval.
        oval_idx = np.array(FACE_OVAL)
        pts = np.concatenate([lm[oval_idx, :2], ring])
        dl = Delaunay(pts).simplices
        centroid = pts[dl].mean(axis=1)
        oval_poly = lm[oval_idx, :2].astype(np.float32)
        outside = np.array([cv2.pointPolygonTest(oval_poly, (float(x), float(y)), False) < 0
                            for x, y in centroid])
        lookup = np.concatenate([oval_idx, N_MESH + np.arange(len(ring))])
        outer = lookup[dl[outside]]
        self.triangles = np.concatenate([face, outer]).astype(np.int32)
        self.n_points = N_MESH + self.n_ring
        # Which ring each extra point belongs to (0 = innermost): callers weight motion by it.
        self.ring_index = np.concatenate([np.full(len(oval_idx) if i == 0 else len(oval_idx[::2]), i)
                                          for i in range(len(self.rings))])

    def points(self, landmarks: np.ndarray, ring_pts: np.ndarray) -> np.ndarray:
        return np.concatenate([np.asarray(landmarks, np.float32)[:N_MESH, :2],
                               np.asarray(ring_pts, np.float32)]).astype(np.float32)


def _affines(src: np.ndarray, dst: np.ndarray, tris: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-triangle ``(T, 2, 3)`` maps dst -> src, and which triangles are usable (not degenerate)."""
    d = dst[tris]                                  # (T, 3, 2)
    s = src[tris]
    dmat = np.concatenate([d, np.ones((len(tris), 3, 1), np.float64)], axis=2)  # (T, 3, 3)
    det = np.linalg.det(dmat)
    ok = np.abs(det) > 1e-6
    mats = np.zeros((len(tris), 2, 3))
    if ok.any():
        # Solve dmat @ X = s for X (3, 2): src = [x y 1] @ X.
        x = np.linalg.solve(dmat[ok], s[ok].astype(np.float64))
        mats[ok] = np.swapaxes(x, 1, 2)
    return mats, ok


def warp(image: np.ndarray, src_pts: np.ndarray, dst_pts: np.ndarray, triangles: np.ndarray,
         out: np.ndarray | None = None, extra_flow=None, moved: np.ndarray | None = None,
         box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Piecewise-affine warp moving ``src_pts`` (in ``image``) to ``dst_pts`` (in the result).

    Only the bounding box of the moved triangles is resampled; everything else is copied from
    ``image`` (into ``out`` if given). ``extra_flow(xs, ys) -> (dx, dy)`` adds a smooth backward
    offset inside that box (breathing), and must be 0 at its edges; ``box`` (x0, y0, x1, y1) widens
    the resampled box to cover where that flow acts. ``moved`` (bool per point)
    limits the work to triangles with a moving vertex: a still triangle maps to itself.
    """
    h, w = image.shape[:2]
    result = image.copy() if out is None else out
    src = np.asarray(src_pts, np.float64)
    dst = np.asarray(dst_pts, np.float64)
    tris = triangles
    if moved is not None:
        tris = tris[np.asarray(moved)[tris].any(axis=1)]
    if len(tris) == 0 and box is None:
        return result
    corners = np.concatenate([dst[tris].reshape(-1, 2), src[tris].reshape(-1, 2)])
    if box is not None:
        corners = np.concatenate([corners, np.array(box, np.float64).reshape(2, 2)])
    x0, y0 = np.maximum(np.floor(corners.min(axis=0)).astype(int) - 1, 0)
    x1, y1 = np.minimum(np.ceil(corners.max(axis=0)).astype(int) + 2, [w, h])
    if x1 <= x0 or y1 <= y0:
        return result
    bw, bh = x1 - x0, y1 - y0
    mats, ok = _affines(src, dst, tris)
    # Label image: 0 = no triangle (copy), k + 1 = triangle k.
    labels = np.zeros((bh, bw), np.int32)
    scaled = np.round((dst[tris] - [x0, y0]) * (1 << _SHIFT)).astype(np.int32)
    for k in np.flatnonzero(ok):
        cv2.fillConvexPoly(labels, scaled[k], int(k + 1), lineType=cv2.LINE_8, shift=_SHIFT)
    # Pixels no triangle claimed inside the mesh (a lid or lip strip squeezed to a line, a crack
    # between two rasterised triangles) take a neighbour's triangle, rather than showing the
    # unwarped image through the crack. Only cracks: the pixels just outside the warped region
    # keep their own (identity) map, else they would be sampled through the moving edge
    # triangle's map, a jagged light or dark seam along its border (the cheek, the neck).
    covered = (labels > 0).astype(np.uint8)
    kernel = np.ones((3, 3), np.uint8)
    holes = (cv2.erode(cv2.dilate(covered, kernel), kernel, borderType=cv2.BORDER_REPLICATE) > 0) & (covered == 0)
    if holes.any():
        grown = cv2.dilate(labels.astype(np.float32), kernel).astype(np.int32)
        labels[holes] = grown[holes]
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    inside = labels > 0
    m = mats[labels[inside] - 1].astype(np.float32)  # (P, 2, 3)
    px, py = xs[inside], ys[inside]
    map_x, map_y = xs.copy(), ys.copy()
    map_x[inside] = m[:, 0, 0] * px + m[:, 0, 1] * py + m[:, 0, 2]
    map_y[inside] = m[:, 1, 0] * px + m[:, 1, 1] * py + m[:, 1, 2]
    if extra_flow is not None:
        dx, dy = extra_flow(xs, ys)
        map_x += dx
        map_y += dy
    # Sample from the whole image (a triangle may read from outside the box it lands in).
    patch = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    result[y0:y1, x0:x1] = patch
    return result
