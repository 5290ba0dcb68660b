"""Audio → mouth motion: a speaker-independent model shipped with lipdub, plus per-avatar calibration.

Entry point for the renderer / generation pipeline::

    landmarks = audio_to_motion(features, avatar, mouth_scale=1.0, motion_smooth=1.0)

``features`` is ``lipdub.audio.AudioFeatures`` (whisper, mel, vad for each output frame), ``avatar``
an ``Avatar`` (or its ``(M, 478, 3)`` landmark track); the result is ``(N, 478, 3)`` pixel landmarks
per output frame: the template frame's own landmarks with lips and jaw moved to the speech.

Streaming: call with chunks whose features carry ``RECEPTIVE_FIELD`` (see ``MotionModel``) frames of
context on each side and pass ``left``/``right``: the chunk's core then equals whole-file output.

Modules: ``representation`` (canonical mouth), ``modules`` (network), ``dataset``/``training``/
``train`` (build data, train, export), ``model`` (onnxruntime inference), ``calibrate``.
"""

from __future__ import annotations

import numpy as np

from lipdub.motion.calibrate import (AmplitudeMap, Calibration, CalibrationOptions, apply, avatar_amplitude_map,
                                    calibrate, calibrate_avatar, fit_amplitude_map, fit_avatar_map,
                                    template_indices)
from lipdub.motion.model import MotionModel, MotionPrediction, silence_gate, smooth_motion
from lipdub.motion.representation import MOUTH_POINTS

__all__ = ["audio_to_motion", "MotionModel", "MotionPrediction", "Calibration", "CalibrationOptions",
           "calibrate", "calibrate_avatar", "avatar_amplitude_map", "AmplitudeMap", "fit_amplitude_map",
           "fit_avatar_map", "apply", "template_indices", "silence_gate", "MOUTH_POINTS", "receptive_field"]


def receptive_field() -> int:
    """Frames of context the shipped model reads on each side of a frame."""
    return MotionModel.load().receptive_field


def audio_to_motion(features, avatar, mouth_scale: float = 1.0, motion_smooth: float = 1.0,
                    frame_indices: np.ndarray | None = None, left: int = 0, right: int = 0,
                    match_range: bool = True, model: MotionModel | None = None,
                    calibration: Calibration | None = None) -> np.ndarray:
    """Per-frame ``(N, 478, 3)`` landmarks (pixels) of ``avatar`` speaking ``features``.

    - ``mouth_scale``: amplitude (1 = the avatar's own range, 0 = mouth stays neutral).
    - ``motion_smooth``: temporal smoothing, Gaussian sigma in frames (0 = none).
    - ``frame_indices``: template frame under each output frame (default: ping-pong over the avatar).
    - ``left``/``right``: context frames at the chunk's ends to drop (streaming); N excludes them.
    - ``calibration``: reuse a ``calibrate(...)`` result across chunks (computed once otherwise).
    Silence (voice activity) settles the mouth to the avatar's neutral with a short ramp.
    """
    model = model or MotionModel.load()
    if calibration is None:
        if hasattr(avatar, "landmarks"):
            calibration = calibrate_avatar(avatar, model, match_range=match_range)
        else:
            calibration = calibrate(np.asarray(avatar), model, match_range=match_range)
    # Smooth before dropping the context frames, so chunk seams match whole-file output.
    ml = min(left, int(np.ceil(3 * motion_smooth)))
    mr = min(right, int(np.ceil(3 * motion_smooth)))
    pred = model.predict(features, left=left - ml, right=right - mr)
    offsets = smooth_motion(pred.offsets, motion_smooth)[ml:len(pred.offsets) - mr]
    opts = CalibrationOptions(mouth_scale=mouth_scale, motion_smooth=0.0, match_range=match_range)
    return apply(calibration, offsets, frame_indices, opts)
