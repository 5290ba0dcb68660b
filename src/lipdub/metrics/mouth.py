"""Mouth-motion metrics on landmark tracks ``(T, 478, 3)`` in pixels, with NaN rows where no face.

- ``aperture_series``: how open the mouth is, frame by frame.
- ``pearson`` / ``best_lag``: do two mouths move together, and how many frames apart.
- ``lmd``: lip-landmark distance, the shape error between two lip tracks in inter-ocular units.

``lipdub.face`` (MediaPipe) is imported only inside the functions that need its index sets, so the
pure signal functions stay cheap to import.
"""

from __future__ import annotations

import math

import numpy as np

# Below this many frames with both values present a correlation is noise (2 points always give +-1).
MIN_PAIRS = 3


def aperture_series(track: np.ndarray) -> np.ndarray:
    """Mouth aperture per frame ``(T,)`` float64 (see ``lipdub.face.mouth_aperture``); NaN where no face."""
    from lipdub.face import mouth_aperture

    track = np.asarray(track, dtype=np.float32)
    if track.ndim != 3:
        raise ValueError(f"expected a landmark track (T, 478, 3), got {track.shape}")
    series = np.asarray(mouth_aperture(track), dtype=np.float64).reshape(len(track))
    missing = np.isnan(track).any(axis=(1, 2))
    series[missing] = np.nan
    return series


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation over the indices where both are finite.

    NaN when fewer than ``MIN_PAIRS`` such pairs remain or either side is constant there, because
    a correlation is undefined then, not zero.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"series differ in length: {x.shape} vs {y.shape}")
    both = np.isfinite(x) & np.isfinite(y)
    if both.sum() < MIN_PAIRS:
        return math.nan
    xs, ys = x[both], y[both]
    dx, dy = xs - xs.mean(), ys - ys.mean()
    sxx, syy = float(dx @ dx), float(dy @ dy)
    # "Constant" means no spread beyond the rounding of the mean, not exactly zero spread.
    for spread, values in ((sxx, xs), (syy, ys)):
        if spread <= len(values) * (1e-12 * float(np.abs(values).max())) ** 2:
            return math.nan
    denom = math.sqrt(sxx * syy)
    return float(np.clip((dx @ dy) / denom, -1.0, 1.0))


def lagged_pearson(x: np.ndarray, y: np.ndarray, lag: int) -> float:
    """Correlation of ``x[t]`` with ``y[t + lag]`` over the frames where both exist."""
    n = min(len(x), len(y))
    x, y = np.asarray(x)[:n], np.asarray(y)[:n]
    if abs(lag) >= n:
        return math.nan
    if lag >= 0:
        return pearson(x[: n - lag], y[lag:])
    return pearson(x[-lag:], y[: n + lag])


def best_lag(x: np.ndarray, y: np.ndarray, max_lag: int = 10,
             tie_tolerance: float = 0.02) -> tuple[int | None, float]:
    """The frame offset that best aligns series B (``y``) with series A (``x``), and r there.

    Sign convention: a **positive lag means B is late** compared with A: ``y[t + lag]`` matches
    ``x[t]`` (B shows a mouth shape ``lag`` frames after A shows it).

    Lags are tried from ``-max_lag`` to ``+max_lag``, limited to half the series length so every
    correlation still sees at least half of the frames. Speech mouth motion is close to periodic,
    so two lags a period apart can score almost the same; among lags whose r is within
    ``tie_tolerance`` of the best, the one nearest 0 wins (real offsets are usually small).
    Returns ``(None, nan)`` when no lag gives a defined correlation.
    """
    n = min(len(x), len(y))
    limit = min(int(max_lag), n // 2)
    scores = {lag: lagged_pearson(x, y, lag) for lag in range(-limit, limit + 1)}
    finite = {lag: r for lag, r in scores.items() if not math.isnan(r)}
    if not finite:
        return None, math.nan
    top = max(finite.values())
    near_top = [lag for lag, r in finite.items() if r >= top - tie_tolerance]
    lag = min(near_top, key=lambda k: (abs(k), k))
    return lag, finite[lag]


def lip_indices() -> np.ndarray:
    """Sorted face-mesh indices of the outer and inner lip contours."""
    from lipdub.face import LIPS_INNER, LIPS_OUTER

    return np.unique(np.concatenate([np.asarray(LIPS_OUTER).ravel(), np.asarray(LIPS_INNER).ravel()]))


def lip_shape(track: np.ndarray) -> np.ndarray:
    """Lip points per frame ``(T, K, 2)``: centred on their mean, divided by the inter-ocular distance.

    Only x and y are used: MediaPipe's z is a relative depth guess, much noisier than x/y, and
    would dominate the distance. Frames without a face (or a zero eye distance) are NaN.
    """
    from lipdub.face import inter_ocular

    track = np.asarray(track, dtype=np.float64)
    if track.ndim != 3:
        raise ValueError(f"expected a landmark track (T, 478, 3), got {track.shape}")
    lips = track[:, lip_indices(), :2]
    centred = lips - lips.mean(axis=1, keepdims=True)
    iod = np.asarray(inter_ocular(track.astype(np.float32)), dtype=np.float64).reshape(len(track))
    with np.errstate(invalid="ignore", divide="ignore"):
        shape = centred / iod[:, None, None]
    bad = ~np.isfinite(iod) | (iod <= 0)
    shape[bad] = np.nan
    return shape


def lmd_from_shapes(shape_a: np.ndarray, shape_b: np.ndarray) -> float:
    """Mean Euclidean distance between two ``lip_shape`` outputs over points and common frames."""
    if shape_a.shape != shape_b.shape:
        raise ValueError(f"lip shapes differ: {shape_a.shape} vs {shape_b.shape}")
    per_point = np.linalg.norm(shape_a - shape_b, axis=2)  # (T, K)
    valid = np.isfinite(per_point).all(axis=1)
    if not valid.any():
        return math.nan
    return float(per_point[valid].mean())


def lmd(track_a: np.ndarray, track_b: np.ndarray) -> float:
    """Lip-landmark distance in inter-ocular units (0 = same lip shapes); NaN with no common face.

    Each frame's lip points are centred on their mean and divided by that frame's own inter-ocular
    distance, so head position and video resolution cancel out and only the lip shape is compared.
    Frames where either track has no face are skipped.
    """
    if len(track_a) != len(track_b):
        raise ValueError(f"tracks differ in length: {len(track_a)} vs {len(track_b)}")
    return lmd_from_shapes(lip_shape(track_a), lip_shape(track_b))
