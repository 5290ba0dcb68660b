"""The part of a template frame's mouth shape that comes from the head's pose, not from speech.

The canonical frame (``representation.to_canonical``) undoes a 2-D similarity fitted on the eyes and
nose. A head that turns or nods is not undone by it: the jaw line the tracker follows is the face's
silhouette, which slides across the cheek as the head turns, and the lips foreshorten. Put the
avatar's single neutral mouth on such a frame and its jaw line lands well away from the one the
frame shows; the renderer then bends the frame's own jaw to it, and the cheek folds over.

``pose_deformation`` measures, per template frame, how far its mouth sits from the neutral because
of its pose: the frame's offsets are regressed (ridge) on a few principal components of where
rigid points (forehead, temples, cheekbones, nose) land after the alignment. Those components are
first made uncorrelated with the frame's own inner-lip gap, so that the avatar's own speech (a head
that nods on stressed syllables) is not taken for pose; the fitted part is then stripped of any
effect on the gap. ``calibrate.apply`` adds it to every new mouth it puts on that frame.
"""

from __future__ import annotations

import numpy as np

from lipdub.face import apply_similarity
from lipdub.motion import representation as rep

#: Rigid points the alignment does not fit (forehead, temples, cheekbones beside the eyes, nose
#: tip and ridge): where they land after it tells how the head is turned or tilted.
POSE_POINTS = (10, 151, 9, 109, 338, 21, 251, 127, 356, 234, 454, 1, 4, 5, 6, 168, 195, 197)
#: Pose components regressed on: turn, nod and a third. Fitted on the first 60 % of four avatars'
#: frames, 3 explained 45-82 % of the jaw line's offsets on the rest (2 or 4: within 0.04 of it).
POSE_COMPONENTS = 3
#: Ridge penalty per frame, in (inter-ocular units)^2: a head that barely moves gets no correction.
POSE_RIDGE = 1e-3
#: Fewer usable frames than this (a photo, a very short clip): no pose part.
POSE_MIN_FRAMES = 25
#: Slots of the jaw line in the canonical mouth.
JAW_SLOTS = [i for i, p in enumerate(rep.MOUTH_POINTS) if p in rep.JAW_POINTS]


def pose_points(landmarks: np.ndarray, matrices: np.ndarray, factor: float,
                points=POSE_POINTS) -> np.ndarray:
    """``(N, len(points), 3)`` rigid points in the canonical frame, by the per-frame ``matrices``
    and ``factor`` that ``representation.to_canonical`` returned for the same track."""
    lm = np.asarray(landmarks, np.float32)[:, list(points), :]
    return (apply_similarity(lm, matrices) / factor).astype(np.float32)


def pose_deformation(points: np.ndarray, mouth: np.ndarray, neutral: np.ndarray,
                     usable: np.ndarray | None = None, jaw_only: bool = True) -> np.ndarray:
    """``(N, K, 3)`` canonical offsets of each frame's mouth that its pose explains, relative to
    the pose of the frames ``neutral`` was measured on (its least-open ``usable`` frames).

    ``points``: ``pose_points`` of the frames; ``mouth``: their canonical mouths ``(N, K, 3)``;
    ``usable``: frames to fit on (default all finite ones). Zero when too few frames are usable,
    and on untracked frames. ``jaw_only``: the lips get none (generation: on four avatars the
    renderer kept the target's gap/width no better with the lips' part, r 0.898 against 0.902, and
    the lips stay exactly the motion model's); False gives every point its part, less any effect
    on the inner-lip gap.
    """
    n = len(mouth)
    out = np.zeros((n, rep.N_POINTS, 3), np.float32)
    off = (np.asarray(mouth, np.float64) - np.asarray(neutral, np.float64)).reshape(n, -1)
    rig = np.asarray(points, np.float64).reshape(n, -1)
    finite = np.isfinite(off).all(1) & np.isfinite(rig).all(1)
    fit = finite.copy()
    if usable is not None:
        fit &= np.asarray(usable, bool)[:n]
    if fit.sum() < POSE_MIN_FRAMES:
        return out
    ap = rep.aperture(off).astype(np.float64)
    rig = rig - rig[fit].mean(0)
    # Principal axes from the small (3J, 3J) covariance: an SVD of the (N, 3J) frames was slow.
    _, axes = np.linalg.eigh(rig[fit].T @ rig[fit])
    z = np.nan_to_num(rig) @ axes[:, ::-1][:, :POSE_COMPONENTS]
    # Pose uncorrelated with the frame's own gap: the avatar's speech is not attributed to pose.
    gap = np.stack([np.nan_to_num(ap) - ap[fit].mean(), np.ones(n)], 1)
    z -= gap @ np.linalg.lstsq(gap[fit], z[fit], rcond=None)[0]
    x = np.concatenate([z, np.ones((n, 1))], 1)
    reg = POSE_RIDGE * fit.sum() * np.eye(x.shape[1])
    reg[-1, -1] = 0.0  # the intercept (mean speech offset) is not penalised, nor used below
    coef = np.linalg.solve(x[fit].T @ x[fit] + reg, x[fit].T @ off[fit])[:-1]
    neutral_frames = fit & (ap <= np.quantile(ap[fit], rep.NEUTRAL_QUANTILE))
    part = (z - z[neutral_frames].mean(0)) @ coef
    part[~finite] = 0.0
    if not jaw_only:
        # No effect on the inner-lip gap: opening and closing stay the motion model's alone.
        w = rep.aperture_vector().astype(np.float64)
        part -= np.outer(part @ w / (w @ w), w)
    out[:] = part.reshape(n, rep.N_POINTS, 3)
    if jaw_only:
        lips = np.setdiff1d(np.arange(rep.N_POINTS), JAW_SLOTS)
        out[:, lips] = 0.0
    return out
