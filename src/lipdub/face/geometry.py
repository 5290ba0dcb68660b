"""Measurements on face-mesh landmarks, for one face ``(478, 3)`` or a track ``(T, 478, 3)``.

Distances use x and y only: MediaPipe's z is a relative depth guess, far noisier than x/y.
Frames whose landmarks are NaN give NaN, never an exception, so tracks with gaps pass through.
"""

from __future__ import annotations

import numpy as np

from lipdub.face.mesh import (
    EAR_POINTS,
    INNER_LIP_PAIRS,
    LEFT_EYE_CORNERS,
    MOUTH_CORNERS,
    RIGHT_EYE_CORNERS,
    STABLE_POINTS,
)


def _as_landmarks(lm: np.ndarray) -> np.ndarray:
    lm = np.asarray(lm)
    if lm.ndim not in (2, 3) or lm.shape[-1] not in (2, 3):
        raise ValueError(f"expected landmarks (478, 3) or (T, 478, 3), got {lm.shape}")
    return lm


def _distance(lm: np.ndarray, a, b) -> np.ndarray:
    """2-D distance between points (or point sets, averaged first) ``a`` and ``b``."""
    pa = lm[..., list(np.atleast_1d(a)), :2].mean(axis=-2)
    pb = lm[..., list(np.atleast_1d(b)), :2].mean(axis=-2)
    return np.linalg.norm(pa - pb, axis=-1)


def _scalar_or_array(x: np.ndarray):
    return float(x) if np.ndim(x) == 0 else x


def eye_centres(lm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(right, left) eye centres ``(..., 2)``: the midpoint of each eye's two corners.

    Corners rather than the iris or the lid contour, because they move neither with gaze nor with
    blinks.
    """
    lm = _as_landmarks(lm)
    right = lm[..., list(RIGHT_EYE_CORNERS), :2].mean(axis=-2)
    left = lm[..., list(LEFT_EYE_CORNERS), :2].mean(axis=-2)
    return right, left


def inter_ocular(lm: np.ndarray):
    """Distance between the eye centres in pixels: float for one face, ``(T,)`` for a track."""
    right, left = eye_centres(lm)
    return _scalar_or_array(np.linalg.norm(left - right, axis=-1))


def mouth_width(lm: np.ndarray):
    """Distance between the mouth corners (61, 291) in pixels."""
    lm = _as_landmarks(lm)
    return _scalar_or_array(_distance(lm, MOUTH_CORNERS[0], MOUTH_CORNERS[1]))


def mouth_aperture(lm: np.ndarray):
    """Inner-lip opening divided by mouth width (0 = closed, ~0.3-0.6 wide open).

    The opening is the mean gap of ``INNER_LIP_PAIRS`` (facing upper/lower inner-lip points across
    the middle of the mouth). Dividing by the mouth width makes it independent of face size and
    distance; it rises a little when the lips spread for /i/, which is the price of a measure
    that needs no per-person calibration.
    """
    lm = _as_landmarks(lm)
    upper = [u for u, _ in INNER_LIP_PAIRS]
    lower = [d for _, d in INNER_LIP_PAIRS]
    gaps = np.linalg.norm(lm[..., upper, :2] - lm[..., lower, :2], axis=-1).mean(axis=-1)
    width = _distance(lm, MOUTH_CORNERS[0], MOUTH_CORNERS[1])
    with np.errstate(invalid="ignore", divide="ignore"):
        return _scalar_or_array(gaps / width)


def eye_aspect_ratio(lm: np.ndarray, side: str):
    """Eye openness ``(|p2-p6| + |p3-p5|) / (2 |p1-p4|)`` for the subject's ``"left"`` or ``"right"`` eye.

    About 0.25-0.35 open and below ~0.15 closed (blink).
    """
    if side not in EAR_POINTS:
        raise ValueError(f"side must be 'left' or 'right', not {side!r}")
    lm = _as_landmarks(lm)
    p1, p2, p3, p4, p5, p6 = EAR_POINTS[side]
    vertical = _distance(lm, p2, p6) + _distance(lm, p3, p5)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _scalar_or_array(vertical / (2.0 * _distance(lm, p1, p4)))


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares 2-D similarity (rotation, uniform scale, translation) mapping src onto dst.

    Umeyama's closed form. ``src``/``dst`` are ``(K, 2)`` or stacks ``(T, K, 2)``; returns ``(2, 3)``
    or ``(T, 2, 3)`` matrices ``M`` with ``dst ~= src @ M[:, :2].T + M[:, 2]``. Reflections are
    excluded (a face never mirrors between frames).
    """
    src = np.asarray(src, dtype=np.float64)[..., :2]
    dst = np.asarray(dst, dtype=np.float64)[..., :2]
    if src.shape != dst.shape:
        dst = np.broadcast_to(dst, src.shape)
    mu_s = src.mean(axis=-2, keepdims=True)
    mu_d = dst.mean(axis=-2, keepdims=True)
    s, d = src - mu_s, dst - mu_d
    n = src.shape[-2]
    cov = np.swapaxes(d, -1, -2) @ s / n  # (..., 2, 2): dst x src cross-covariance
    u, sv, vt = np.linalg.svd(cov)
    # Flip the weakest axis if the best orthogonal map would be a reflection.
    sign = np.sign(np.linalg.det(u) * np.linalg.det(vt))
    sign = np.where(sign == 0, 1.0, sign)
    fix = np.stack([np.ones_like(sign), sign], axis=-1)
    rot = (u * fix[..., None, :]) @ vt
    var_s = (s ** 2).sum(axis=(-1, -2)) / n
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = (sv * fix).sum(axis=-1) / var_s
    lin = rot * scale[..., None, None]
    trans = mu_d[..., 0, :] - (lin @ mu_s[..., 0, :, None])[..., 0]
    return np.concatenate([lin, trans[..., None]], axis=-1)


def apply_similarity(lm: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply ``(2, 3)`` (or ``(T, 2, 3)``) similarity matrices to landmarks; z is scaled alike."""
    lm = np.asarray(lm, dtype=np.float64)
    lin, trans = matrix[..., :2], matrix[..., 2]
    out = lm.copy()
    out[..., :2] = lm[..., :2] @ np.swapaxes(lin, -1, -2) + trans[..., None, :]
    if lm.shape[-1] == 3:
        scale = np.sqrt(np.abs(np.linalg.det(lin)))
        out[..., 2] = lm[..., 2] * np.asarray(scale)[..., None]
    return out


def canonical_align(lm: np.ndarray, ref: np.ndarray, points=STABLE_POINTS):
    """Map a face (or each frame of a track) onto ``ref`` by a similarity fitted on stable points.

    Only ``points`` (eye corners, nose bridge and tip by default) drive the fit, so mouth and jaw
    motion stay in the aligned result instead of being averaged away. Returns
    ``(aligned, matrix)``: landmarks in ``ref``'s frame (float32, z scaled like x/y) and the
    ``(2, 3)`` / ``(T, 2, 3)`` matrix used. ``ref`` is one face ``(478, 2|3)``, e.g. a mean face.
    """
    lm = _as_landmarks(lm)
    ref = np.asarray(ref)
    idx = list(points)
    matrix = similarity_transform(lm[..., idx, :2], ref[idx, :2])
    return apply_similarity(lm, matrix).astype(np.float32), matrix
