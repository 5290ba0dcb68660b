"""Per-avatar calibration: predicted canonical mouth motion → this avatar's lips, in each frame's pose.

Three steps per output frame:
1. amplitude: the model's offsets are scaled by the avatar's own range of motion (its 90th
   percentile aperture over the model's typical one, clamped; 1 for stills or near-static footage)
   times the user's ``mouth_scale``;
2. shape: the scaled offsets are added to the avatar's *own* neutral closed mouth (measured from
   its prepared track the same way training measured each speaker's);
3. pose: the result is mapped out of the canonical frame by the inverse of the similarity that
   aligned the chosen template frame, so the mouth follows the head.

Output frames are full ``(478, 3)`` landmark sets: the template frame's own landmarks with the
mouth and jaw points replaced, so renderers can use any index set they like.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lipdub.motion import representation as rep
from lipdub.motion.model import smooth_motion

#: Limits of the automatic amplitude match: footage can mislead (a mostly silent template).
MIN_GAIN, MAX_GAIN = 0.6, 1.6
#: Below this many tracked frames the avatar's range is not trusted (stills, very short clips).
MIN_FRAMES_FOR_RANGE = 50


@dataclass(frozen=True)
class CalibrationOptions:
    mouth_scale: float = 1.0     # user amplitude control (1 = calibrated, 0 = frozen neutral)
    motion_smooth: float = 1.0   # Gaussian temporal smoothing of the motion, sigma in frames
    match_range: bool = True     # scale motion to the avatar's own range of motion

    def __post_init__(self):
        if self.mouth_scale < 0:
            raise ValueError(f"mouth_scale must be >= 0, got {self.mouth_scale}")
        if self.motion_smooth < 0:
            raise ValueError(f"motion_smooth must be >= 0, got {self.motion_smooth}")


@dataclass
class Calibration:
    landmarks: np.ndarray    # (M, 478, 3) the avatar's template track, pixels
    matrices: np.ndarray     # (M, 2, 3) pixel → canonical similarity per template frame
    factor: float            # canonical inter-ocular factor of this avatar
    neutral: np.ndarray      # (K, 3) the avatar's neutral mouth, canonical
    gain: float              # avatar range / model's typical range

    @property
    def n_frames(self) -> int:
        return len(self.landmarks)


def calibrate(landmarks: np.ndarray, model, match_range: bool = True) -> Calibration:
    """Measure an avatar from its prepared track ``(M, 478, 3)`` (pixels, gaps already filled)."""
    lm = np.asarray(landmarks, np.float32)
    if lm.ndim == 2:
        lm = lm[None]
    if lm.ndim != 3 or lm.shape[1] != 478 or not np.isfinite(lm).all():
        raise ValueError(f"expected a gap-free landmark track (M, 478, 3), got {lm.shape}")
    mouth, matrices, factor = rep.to_canonical(lm, model.reference)
    neutral = rep.neutral_shape(mouth)
    gain = 1.0
    if match_range and len(lm) >= MIN_FRAMES_FOR_RANGE:
        opening = rep.aperture((mouth - neutral).reshape(len(mouth), -1))
        own = float(np.percentile(opening, 90))
        # Near-static footage (a photo-like template) says nothing about range: keep the model's.
        if own > 0.15 * model.typical_open:
            gain = float(np.clip(own / model.typical_open, MIN_GAIN, MAX_GAIN))
    return Calibration(lm, matrices, factor, neutral.astype(np.float32), gain)


def template_indices(n_out: int, n_template: int) -> np.ndarray:
    """Ping-pong walk over the template (0, 1, ..., M-1, M-2, ..., 1, 0, 1, ...): no jump at the loop."""
    if n_template <= 1:
        return np.zeros(n_out, np.int64)
    period = 2 * (n_template - 1)
    k = np.arange(n_out) % period
    return np.where(k < n_template, k, period - k).astype(np.int64)


def apply(cal: Calibration, offsets: np.ndarray, frame_indices: np.ndarray | None = None,
          options: CalibrationOptions = CalibrationOptions()) -> np.ndarray:
    """Canonical offsets ``(N, K, 3)`` → landmarks ``(N, 478, 3)`` in pixels of template frames.

    ``frame_indices[i]`` is the template frame output frame ``i`` is drawn over (default: ping-pong).
    """
    off = np.asarray(offsets, np.float32).reshape(len(offsets), rep.N_POINTS, 3)
    n = len(off)
    idx = template_indices(n, cal.n_frames) if frame_indices is None else np.asarray(frame_indices)
    if len(idx) != n:
        raise ValueError(f"{len(idx)} frame indices for {n} motion frames")
    gain = (cal.gain if options.match_range else 1.0) * options.mouth_scale
    off = smooth_motion(off, options.motion_smooth) * gain
    mouth = cal.neutral[None] + off
    pixels = rep.from_canonical(mouth, cal.matrices[idx], cal.factor)
    out = cal.landmarks[idx].copy()
    out[:, list(rep.MOUTH_POINTS)] = pixels
    return out
