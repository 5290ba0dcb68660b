"""Landmark-driven warping of a real mouth onto a new mouth shape (thin-plate spline).

The renderer gets its texture from a real frame whose lips are close to the target shape
(``reference.ReferenceBank``); this module bends that frame so its lips and chin land exactly on the
target's. A thin-plate spline through the lip and chin points is solved per pair (a ~60x60 system),
evaluated on a coarse grid and upsampled to a dense ``cv2.remap`` map: about a millisecond per
crop, cheap enough for generation at video rate.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

GRID = 33  # coarse evaluation grid (points per side); the map is smooth, so this is plenty
REGULARISATION = 1e-3


@lru_cache(maxsize=16)
def _anchors(size: int) -> np.ndarray:
    """Fixed points on the crop border: far from the mouth nothing should move."""
    s = float(size - 1)
    t = np.linspace(0.0, s, 5, dtype=np.float32)
    top = np.stack([t, np.zeros_like(t)], 1)
    bottom = np.stack([t, np.full_like(t, s)], 1)
    left = np.stack([np.zeros(3, np.float32), t[1:4]], 1)
    right = np.stack([np.full(3, s, np.float32), t[1:4]], 1)
    out = np.concatenate([top, bottom, left, right]).astype(np.float32)
    out.flags.writeable = False
    return out


@lru_cache(maxsize=16)
def _grid(size: int) -> np.ndarray:
    """(GRID*GRID, 2) coarse evaluation points (units of the crop side), placed where cv2.resize
    (pixel-centre aligned) will put the coarse values."""
    g = ((np.arange(GRID) + 0.5) * size / GRID - 0.5) / size
    gx, gy = np.meshgrid(g, g)
    out = np.stack([gx.ravel(), gy.ravel()], 1)
    out.flags.writeable = False
    return out


@lru_cache(maxsize=16)
def _grid32(size: int) -> np.ndarray:
    """(GRID, GRID, 4) float32 [x, y, x^2 + y^2, 1] of ``_grid(size)``: the grid half of
    ``_grid_kernel``'s squared distances |a|^2 + |b|^2 - 2ab."""
    g = _grid(size).astype(np.float32)
    out = np.concatenate([g, (g * g).sum(1)[:, None], np.ones((len(g), 1), np.float32)], 1)
    out = out.reshape(GRID, GRID, 4)
    out.flags.writeable = False
    return out


def _kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """U(r) = r^2 log r^2 between point sets a (n, 2) and b (m, 2), with U(0) = 0 (float64)."""
    d2 = (a[:, None, 0] - b[None, :, 0]) ** 2 + (a[:, None, 1] - b[None, :, 1]) ** 2
    d2 = np.maximum(d2, 1e-20)
    return d2 * np.log(d2)


def _grid_kernel(size: int, points: np.ndarray, block: tuple[int, int, int, int] | None = None
                 ) -> np.ndarray:
    """``_kernel(_grid(size), points)`` in float32, |a|^2 + |b|^2 - 2ab: the dense evaluation was
    most of a warp's cost in float64 (1089 x 70 logs); the maps move by < 0.02 px, below remap's
    1/32 px resolution. The small system keeps float64.

    ``block`` (r0, r1, c0, c1): only those grid rows and columns (row-major), the same values."""
    g4 = _grid32(size)
    if block is not None:
        r0, r1, c0, c1 = block
        g4 = g4[r0:r1, c0:c1]
    p = np.asarray(points, np.float32)
    g4 = g4.reshape(-1, 4)
    # A product of depth 2 only: OpenBLAS runs a 1089 x 4 x 80 one on its worker threads, whose
    # spinning afterwards cost generate more CPU (taken from the encoder) than the product itself.
    d2 = g4[:, :2] @ (-2.0 * p).T
    d2 += g4[:, 2:3]
    d2 += (p * p).sum(1)[None, :]
    np.maximum(d2, 1e-20, out=d2)
    out = np.log(d2)
    out *= d2
    return out


def _grid_block(size: int, roi: tuple[int, int, int, int] | None) -> tuple[int, int, int, int] | None:
    """(r0, r1, c0, c1): the coarse grid rows and columns whose values the dense map's ``roi``
    (y0, y1, x0, x1) is interpolated from (cv2.resize, bilinear: output pixel u reads grid
    positions floor(t) and floor(t) + 1, t = (u + 0.5) * GRID / size - 0.5), with a node to spare."""
    if roi is None:
        return None
    k = GRID / float(size)

    def span(a: int, b: int) -> tuple[int, int]:
        return (max(0, int(np.floor((a + 0.5) * k - 0.5)) - 1),
                min(GRID, int(np.floor((b - 0.5) * k - 0.5)) + 3))

    return span(roi[0], roi[1]) + span(roi[2], roi[3])


def _coarse_map(target_pts: np.ndarray, source_pts: np.ndarray, size: int,
                src_size: int, block: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """(GRID, GRID, 2) float32 source positions (pixels) of the coarse output grid; with
    ``block`` (``_grid_block``) only inside it (0 elsewhere: never read for that window)."""
    dst = np.concatenate([np.asarray(target_pts, np.float64), _anchors(size)]) / size
    src = np.concatenate([np.asarray(source_pts, np.float64), _anchors(src_size)]) / src_size
    n = len(dst)
    system = np.zeros((n + 3, n + 3))
    system[:n, :n] = _kernel(dst, dst) + REGULARISATION * np.eye(n)
    system[:n, n] = 1.0
    system[:n, n + 1:] = dst
    system[n, :n] = 1.0
    system[n + 1:, :n] = dst.T
    rhs = np.zeros((n + 3, 2))
    rhs[:n] = src
    # cv2.solve: a 70x70 LU without BLAS threads, which stall on a busy 2-core machine.
    ok, coef = cv2.solve(system, rhs, flags=cv2.DECOMP_LU)
    if not ok:
        coef = np.linalg.lstsq(system, rhs, rcond=None)[0]
    r0, r1, c0, c1 = block if block is not None else (0, GRID, 0, GRID)
    grid = _grid32(size)[r0:r1, c0:c1, :2].reshape(-1, 2)
    c = coef.astype(np.float32)
    mapped = _grid_kernel(size, dst, block) @ c[:n] + c[n] + grid @ c[n + 1:]
    mapped *= np.float32(src_size)
    if block is None:
        return mapped.reshape(GRID, GRID, 2)
    out = np.zeros((GRID, GRID, 2), np.float32)
    out[r0:r1, c0:c1] = mapped.reshape(r1 - r0, c1 - c0, 2)
    return out


def tps_maps(target_pts: np.ndarray, source_pts: np.ndarray, size: int,
             src_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Dense backward maps (map_x, map_y), ``size`` x ``size``, so that ``remap(src, map_x, map_y)``
    moves ``source_pts`` (pixels of a ``src_size`` crop) onto ``target_pts`` (pixels of the
    ``size`` output), the crop borders staying in place. Crops may differ in resolution."""
    dense = cv2.resize(_coarse_map(target_pts, source_pts, size, src_size or size), (size, size),
                       interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(dense[..., 0]), np.ascontiguousarray(dense[..., 1])


def warp(image: np.ndarray, source_pts: np.ndarray, target_pts: np.ndarray,
         size: int | None = None, roi: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """``image`` (S, S, C) bent so that its ``source_pts`` land on ``target_pts``; the result is
    ``size`` x ``size`` (default S), ``target_pts`` being in its pixels.

    ``roi`` (y0, y1, x0, x1): only that window of the result, the same pixels as the whole
    result cut there (remap is per pixel: a paste that uses half the crop pays for half)."""
    size = size or image.shape[0]
    # One two-channel map straight into remap: splitting it into x and y copies cost as much
    # as the resize that made it.
    coarse = _coarse_map(target_pts, source_pts, size, image.shape[0], _grid_block(size, roi))
    dense = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_LINEAR)
    if roi is not None:
        y0, y1, x0, x1 = roi
        dense = dense[y0:y1, x0:x1]
    return cv2.remap(image, dense, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def follow_jaw(template: np.ndarray, own_chin: np.ndarray, target_chin: np.ndarray,
               pins: np.ndarray, still: np.ndarray,
               roi: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """The template crop with its jaw line moved from ``own_chin`` to ``target_chin`` (crop
    points at the template's resolution), neck stretched or compressed down to ``pins``, and
    ``still`` points (nose, cheeks, jaw angles) and the crop border kept in place.

    Only the template's own pixels move, so the one jaw edge and the collar stay single and
    sharp. Identical chins return the template unchanged. ``roi``: only that window (``warp``)."""
    own_chin = np.asarray(own_chin, np.float32)
    target_chin = np.asarray(target_chin, np.float32)
    if np.abs(own_chin - target_chin).max() < 0.05:
        if roi is None:
            return template
        y0, y1, x0, x1 = roi
        return template[y0:y1, x0:x1]
    fixed = np.concatenate([np.asarray(pins, np.float32), np.asarray(still, np.float32)])
    dst = np.concatenate([target_chin, fixed])
    src = np.concatenate([own_chin, fixed])
    return warp(template, src, dst, roi=roi)
