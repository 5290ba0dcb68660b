"""Canonical mouth representation: what the motion model predicts and calibration consumes.

A frame's mouth is ``MOUTH_POINTS`` (outer + inner lips + the lower jaw line) of the 478-point mesh,
mapped into a canonical face frame by the similarity that best aligns the frame's *stable* points
(eye corners, nose) onto a fixed reference face whose inter-ocular distance is 1, then divided by
the clip's own median inter-ocular distance in that frame (so a long nose does not shrink a mouth).
Motion is the offset from the speaker's *neutral* closed mouth, estimated robustly as the mean shape
of the clip's least-open frames. Offsets are in inter-ocular units and flattened to ``(N, P)``,
``P = 3 * len(MOUTH_POINTS)``.

The aperture used for training and evaluation is the canonical vertical gap of the inner-lip pairs,
a linear function of the offsets (``offsets @ aperture_vector()``), so a correlation loss on it is
cheap and exactly matches what the benchmark measures.
"""

from __future__ import annotations

import numpy as np

from lipdub.audio.whisper import FEATURE_DIM as WHISPER_FEATURE_DIM
from lipdub.face import (INNER_LIP_PAIRS, JAW, LIPS_INNER, LIPS_OUTER, STABLE_POINTS,
                         canonical_align, inter_ocular, mouth_aperture)

#: Lower jaw line (cheek at mouth height → chin → other cheek): it moves when the jaw drops.
JAW_POINTS = tuple(p for p in JAW if p in (365, 379, 378, 400, 377, 152, 148, 176, 149, 150, 136))
MOUTH_POINTS: tuple[int, ...] = tuple(LIPS_OUTER) + tuple(LIPS_INNER) + JAW_POINTS
N_POINTS = len(MOUTH_POINTS)
N_DIMS = 3 * N_POINTS
#: Fraction of least-open frames whose mean shape is the neutral mouth.
NEUTRAL_QUANTILE = 0.10


def _slot(index: int) -> int:
    return MOUTH_POINTS.index(index)


def aperture_vector() -> np.ndarray:
    """``(P,)`` weights: ``offsets @ w`` is the mean canonical y gap of the inner-lip pairs."""
    w = np.zeros((N_POINTS, 3), dtype=np.float32)
    for upper, lower in INNER_LIP_PAIRS:
        w[_slot(lower), 1] += 1.0 / len(INNER_LIP_PAIRS)
        w[_slot(upper), 1] -= 1.0 / len(INNER_LIP_PAIRS)
    return w.reshape(-1)


def aperture(mouth: np.ndarray) -> np.ndarray:
    """Canonical inner-lip gap of mouths ``(..., P)`` (neutral + offsets, or offsets alone)."""
    return np.asarray(mouth, dtype=np.float32) @ aperture_vector()


def opening_pattern(offsets: list[np.ndarray], weights: list[np.ndarray] | None = None) -> np.ndarray:
    """``(K, 3)`` offsets per unit of aperture: the least-squares ``d`` in ``offsets ≈ a * d`` over
    all frames (``a`` each frame's aperture, ``weights`` per frame), so ``aperture(d) == 1``.

    It is how a mouth moves as it opens (the jaw drops with the lower lip), averaged over what the
    frames do besides: calibration moves a frame's opening along it (``calibrate.apply``).
    """
    y = np.concatenate([np.asarray(o, np.float64).reshape(len(o), -1) for o in offsets])
    w = np.ones(len(y)) if weights is None else np.concatenate([np.asarray(v, np.float64) for v in weights])
    a = y @ aperture_vector().astype(np.float64)
    denom = float((w * a * a).sum())
    if denom <= 0:
        raise ValueError("opening_pattern needs frames whose aperture varies")
    return ((w * a) @ y / denom).reshape(N_POINTS, 3).astype(np.float32)


def limit_closing(offsets: np.ndarray, neutral: np.ndarray) -> np.ndarray:
    """Offsets ``(N, K, 3)`` from ``neutral``, each frame scaled down (whole, so the mouth keeps its
    shape) where it would close the inner lips past the point where they meet.

    A predicted closure can overshoot the avatar's closed mouth (offsets from its neutral are
    scaled by the amplitude map): a mouth closed past its lips is a shape no bank mouth has, and
    the renderer's warp folds the lips over or tears the patch.
    """
    off = np.asarray(offsets, np.float32)
    flat = off.reshape(len(off), -1)
    room = max(float(aperture(np.asarray(neutral, np.float32).reshape(-1))), 0.0)
    closing = aperture(flat)
    scale = np.ones(len(off), np.float32)
    past = closing < -room
    scale[past] = room / -closing[past]
    return off * scale.reshape((-1,) + (1,) * (off.ndim - 1))


def uncross_lips(mouth: np.ndarray, neutral: np.ndarray) -> np.ndarray:
    """Canonical mouths ``(N, K, 3)`` whose inner lips meet but never pass through each other
    (what ``limit_closing`` leaves of a crossing, pair by pair).

    Each facing inner-lip pair keeps a vertical gap of at least the smaller of 0 and the
    neutral's own (a tracked closed mouth can read a little below 0); the pair is moved
    symmetrically, so the closure stays where the two lips meet.
    """
    out = np.array(mouth, dtype=np.float32, copy=True)
    for upper, lower in INNER_LIP_PAIRS:
        u, d = _slot(upper), _slot(lower)
        floor = min(0.0, float(neutral[d, 1] - neutral[u, 1]))
        short = np.maximum(floor - (out[:, d, 1] - out[:, u, 1]), 0.0)
        out[:, d, 1] += short / 2
        out[:, u, 1] -= short / 2
    return out


def reference_face(landmarks: np.ndarray) -> np.ndarray:
    """A canonical reference ``(478, 3)`` from one clip's track: median face, eyes level, IOD 1.

    Only its stable points matter to :func:`canonical_align`; the shipped model stores them so
    inference aligns exactly as training did.
    """
    face = np.nanmedian(np.asarray(landmarks, dtype=np.float64), axis=0)
    right = face[[33, 133], :2].mean(0)
    left = face[[263, 362], :2].mean(0)
    d = left - right
    ang = np.arctan2(d[1], d[0])
    c, s = np.cos(-ang), np.sin(-ang)
    rot = np.array([[c, -s], [s, c]])
    out = face.copy()
    out[:, :2] = (face[:, :2] - (left + right) / 2) @ rot.T / np.linalg.norm(d)
    out[:, 2] = (face[:, 2] - np.nanmean(face[:, 2])) / np.linalg.norm(d)
    return out.astype(np.float32)


def to_canonical(landmarks: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Track ``(N, 478, 3)`` px → canonical mouths ``(N, K, 3)``, matrices ``(N, 2, 3)``, IOD factor.

    ``factor`` is the clip's median canonical inter-ocular distance (≈1); canonical mouths are
    divided by it. Frames with NaN landmarks stay NaN.
    """
    aligned, matrix = canonical_align(np.asarray(landmarks, dtype=np.float32), ref)
    iod = np.asarray(inter_ocular(aligned), dtype=np.float64).reshape(-1)
    factor = float(np.nanmedian(iod)) if np.isfinite(iod).any() else 1.0
    mouth = aligned[:, list(MOUTH_POINTS), :] / factor
    return mouth.astype(np.float32), matrix, factor


def from_canonical(mouth: np.ndarray, matrix: np.ndarray, factor: float) -> np.ndarray:
    """Inverse of :func:`to_canonical` for mouths ``(N, K, 3)`` and per-frame matrices ``(N, 2, 3)``."""
    mouth = np.asarray(mouth, dtype=np.float64) * factor
    lin, trans = matrix[..., :2], matrix[..., 2]
    inv = np.linalg.inv(lin)
    out = np.empty_like(mouth)
    out[..., :2] = (mouth[..., :2] - trans[:, None, :]) @ np.swapaxes(inv, -1, -2)
    scale = np.sqrt(np.abs(np.linalg.det(lin)))
    out[..., 2] = mouth[..., 2] / scale[:, None]
    return out.astype(np.float32)


def neutral_shape(mouth: np.ndarray, quantile: float = NEUTRAL_QUANTILE) -> np.ndarray:
    """Robust neutral closed mouth ``(K, 3)``: mean of the frames in the lowest aperture quantile.

    Least-open frames rather than the first frame or a global mean: a clip may start mid-word, and
    the mean of a talking mouth is half open.
    """
    flat = np.asarray(mouth, dtype=np.float32).reshape(len(mouth), -1)
    ok = np.isfinite(flat).all(axis=1)
    if not ok.any():
        raise ValueError("no tracked frame to estimate a neutral mouth from")
    flat = flat[ok]
    ap = aperture(flat)
    cut = np.quantile(ap, quantile)
    return flat[ap <= cut].mean(axis=0).reshape(N_POINTS, 3)


def smooth_offsets(offsets: np.ndarray, window: int = 5) -> np.ndarray:
    """Light Savitzky-Golay smoothing of a target track: removes tracker jitter, keeps closures."""
    if len(offsets) < window or window < 3:
        return offsets
    from scipy.signal import savgol_filter  # here: scipy.signal takes ~0.9 s to import

    return savgol_filter(offsets, window, 2, axis=0).astype(np.float32)


def real_aperture(landmarks: np.ndarray) -> np.ndarray:
    """Pixel-space aperture (inner gap / mouth width) from :mod:`lipdub.face`, for cross-checks."""
    return np.asarray(mouth_aperture(landmarks), dtype=np.float32)


def stable_ref(ref: np.ndarray) -> list[list[float]]:
    """The reference's stable points, as stored in the model manifest (z is unused by the fit)."""
    return np.nan_to_num(np.asarray(ref)[list(STABLE_POINTS), :]).round(6).tolist()


def ref_from_stable(points) -> np.ndarray:
    """A ``(478, 3)`` reference whose stable points are ``points`` (others unused, zero)."""
    ref = np.zeros((478, 3), dtype=np.float32)
    ref[list(STABLE_POINTS)] = np.nan_to_num(np.asarray(points, dtype=np.float32))
    return ref


# --- Model input -----------------------------------------------------------------------------
#: Mel bins and time slots kept per frame: the (80, 16) window pooled to (40, 4).
MEL_BINS, MEL_SLOTS = 40, 4
WHISPER_DIM = WHISPER_FEATURE_DIM
INPUT_DIM = WHISPER_DIM + MEL_BINS * MEL_SLOTS + 1


def prepare_input(whisper: np.ndarray, mel: np.ndarray, vad: np.ndarray) -> np.ndarray:
    """Per-frame model input ``(N, INPUT_DIM)``: Whisper state, pooled mel window, voice activity.

    The mel window is pooled 2x in frequency and 4x in time: a 0.2 s window at 40 bins keeps the
    onset/closure timing the conv needs while cutting the input width (and overfitting) by 8x.
    """
    n = len(whisper)
    m = np.asarray(mel, dtype=np.float32).reshape(n, MEL_BINS, 2, MEL_SLOTS, -1).mean(axis=(2, 4))
    return np.concatenate([np.asarray(whisper, dtype=np.float32), m.reshape(n, -1),
                           np.asarray(vad, dtype=np.float32).reshape(n, 1)], axis=1)


def loudness_envelope(audio: np.ndarray, fps: float, n_frames: int, sr: int = 16000) -> np.ndarray:
    """RMS level (dB) in a 40 ms window centred on each frame: the baseline the model must beat."""
    half = int(0.02 * sr)
    centres = (np.arange(n_frames) / fps * sr).astype(np.int64)
    padded = np.pad(np.asarray(audio, dtype=np.float32), (half, half))
    c2 = np.concatenate([[0.0], np.cumsum(padded.astype(np.float64) ** 2)])
    lo = np.clip(centres, 0, len(padded) - 1)
    hi = np.clip(centres + 2 * half, 0, len(padded))
    rms = np.sqrt(np.maximum(c2[hi] - c2[lo], 0) / max(1, 2 * half))
    return (20 * np.log10(rms + 1e-5)).astype(np.float32)
