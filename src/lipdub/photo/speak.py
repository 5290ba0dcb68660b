"""A photo avatar saying some audio: idle template + motion model targets + mouth renderer.

The pipeline's photo path in one place, with no avatar folder needed: ``demo`` and
``benchmarks/photo_eval.py`` use it, and the generation pipeline can call ``photo_frames`` with an
``Avatar`` of kind "photo" (anything with ``landmarks``, ``n_frames`` and ``frame(i)``).
"""

from __future__ import annotations

import sys
from typing import Iterator

import numpy as np

from lipdub.errors import MissingDependencyError
from lipdub.photo.mouth import PhotoMouthRenderer, open_mouth_landmarks


def ping_pong(n_out: int, n_template: int) -> np.ndarray:
    """Template frame under each output frame: 0..M-1, M-2..1, 0, ... (the pipeline's walk)."""
    from lipdub.motion.calibrate import template_indices

    return template_indices(n_out, n_template)


def loudness_targets(landmarks: np.ndarray, features, order: np.ndarray,
                     mouth_scale: float = 1.0) -> np.ndarray:
    """Fallback targets from loudness alone (no motion model): aperture follows the mel energy.

    Only for an install without ``models/motion.onnx``; it opens on every loud sound and never
    shapes vowels, so it is far from the motion model's sync.
    """
    from scipy.ndimage import gaussian_filter1d

    energy = features.mel.mean(axis=(1, 2)) if features.mel is not None else np.zeros(len(order))
    lo, hi = np.percentile(energy, 10), np.percentile(energy, 95)
    level = np.clip((energy - lo) / max(hi - lo, 1e-6), 0, 1)
    if features.vad is not None:
        level = level * np.clip(features.vad * 1.5, 0, 1)
    level = gaussian_filter1d(level, 1.0)
    out = np.empty((len(order),) + landmarks.shape[1:], np.float32)
    for i, k in enumerate(order):
        from lipdub.face.geometry import mouth_aperture

        rest = float(mouth_aperture(landmarks[k]))
        out[i] = open_mouth_landmarks(landmarks[k], rest + 0.22 * mouth_scale * float(level[i]) ** 1.5)
    return out


def motion_targets(landmarks: np.ndarray, features, order: np.ndarray, mouth_scale: float = 1.0,
                   motion_smooth: float = 1.0) -> tuple[np.ndarray, str]:
    """Target landmarks ``(N, 478, 3)`` per output frame and which source made them
    (``"motion"``: the shipped model; ``"loudness"``: the fallback when it is not installed)."""
    try:
        from lipdub.motion import audio_to_motion

        lms = audio_to_motion(features, np.asarray(landmarks), mouth_scale, motion_smooth,
                              frame_indices=order)
        return lms, "motion"
    except MissingDependencyError as exc:
        print(f"lipdub: warning: {exc}; mouth follows loudness only", file=sys.stderr)
        return loudness_targets(np.asarray(landmarks), features, order, mouth_scale), "loudness"


def photo_frames(template, targets: np.ndarray, order: np.ndarray,
                 renderer: PhotoMouthRenderer | None = None, chunk: int = 16) -> Iterator[np.ndarray]:
    """Output frames: template frame ``order[i]`` with its mouth rendered to ``targets[i]``.

    Template frames are warped (or decoded) once per visit; the interior model runs per chunk.
    """
    landmarks = np.asarray(template.landmarks)
    renderer = renderer or PhotoMouthRenderer(landmarks[0])
    cache: dict[int, np.ndarray] = {}
    for s in range(0, len(order), chunk):
        idx = order[s:s + chunk]
        frames = []
        for k in idx:
            frame = cache.get(int(k))
            if frame is None:
                frame = template.frame(int(k))
                # A ping-pong walk revisits frames; a short template is cheap to keep whole.
                if len(cache) < 400:
                    cache[int(k)] = frame
            frames.append(frame)
        yield from renderer.render_chunk(frames, landmarks[idx], targets[s:s + chunk])
