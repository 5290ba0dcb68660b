"""The shipped audio → mouth model, run through onnxruntime (no torch needed at inference).

``MotionModel.load()`` opens ``lipdub/models/motion.onnx`` and its manifest (reference face, input
layout, receptive field, amplitude statistics). ``predict(features)`` returns canonical mouth
landmarks per frame (generic neutral + predicted offsets), with silence gated to the neutral.

Chunks / streaming: the network sees ``receptive_field`` frames on each side. Pass chunks that
carry that much real context and tell ``predict`` how many context frames to drop
(``left``/``right``); missing context at a file's ends is edge-replicated, exactly as in training,
so chunked output equals whole-file output.

Delay: the manifest's ``delay_frames`` (measured on out-of-fold predictions of held-out speakers:
the mean best lag of the real mouth behind the prediction) shifts the output later by that many
frames, so the network then reads ``R + delay`` past and ``R - delay`` future frames
(``context_left`` / ``context_right``); ``receptive_field`` is the larger of the two.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter1d

from lipdub.errors import MissingDependencyError
from lipdub.motion import representation as rep

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
ONNX_PATH = MODELS_DIR / "motion.onnx"
MANIFEST_PATH = MODELS_DIR / "motion_manifest.json"
#: Frames the speech mask is widened by: lips part before a sound and close after it (4 frames kept
#: held-out r at its ungated level, 2 lost 0.02: real mouths move just outside the VAD's speech).
GATE_PAD = 4
#: Length (frames) of the ramp between silence and speech: no step, no flicker.
GATE_RAMP = 7


@dataclass
class MotionPrediction:
    offsets: np.ndarray      # (N, K, 3) canonical offsets from neutral (gated)
    landmarks: np.ndarray    # (N, K, 3) canonical mouth: generic neutral + offsets
    gate: np.ndarray         # (N,) 0 = silent (neutral), 1 = speaking
    points: tuple[int, ...] = rep.MOUTH_POINTS

    @property
    def aperture(self) -> np.ndarray:
        return rep.aperture(self.offsets.reshape(len(self.offsets), -1))


def silence_gate(vad: np.ndarray, pad: int = GATE_PAD, ramp: int = GATE_RAMP) -> np.ndarray:
    """Speech weight per frame in 0..1 from voice activity: hysteresis, widened, smoothly ramped.

    Hysteresis (``speech_mask``) removes flicker from a wavering probability; the widening lets
    the mouth start opening just before a sound; the moving-average ramp turns on/off steps into
    ``ramp``-frame fades, so a mouth settles closed instead of snapping shut.
    """
    from lipdub.audio.vad import speech_mask

    mask = speech_mask(np.asarray(vad, np.float32)).astype(np.float32)
    if pad and mask.any():
        kernel = np.ones(2 * pad + 1, np.float32)
        mask = (np.convolve(mask, kernel, mode="same") > 0).astype(np.float32)
    if ramp > 1:
        padded = np.pad(mask, (ramp // 2, ramp - 1 - ramp // 2), mode="edge")
        mask = np.convolve(padded, np.ones(ramp, np.float32) / ramp, mode="valid")
    return np.clip(mask, 0.0, 1.0).astype(np.float32)


def _features_input(features) -> np.ndarray:
    return rep.prepare_input(features.whisper, features.mel, features.vad)


class MotionModel:
    """onnxruntime session of ``motion.onnx`` plus what its manifest says about it."""

    def __init__(self, onnx_path: Path, manifest: dict, threads: int = 1):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        # A small net run a few hundred frames at a time: threads that spin between runs would
        # take CPU from the renderer and the video encoder (generate) or the drawing (streaming).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        self.manifest = manifest
        net_field = int(manifest["receptive_field"])
        delay = int(np.clip(int(manifest.get("delay_frames", 0)), -net_field, net_field))
        self.delay = delay
        self.context_left, self.context_right = net_field + delay, net_field - delay
        self.receptive_field = max(self.context_left, self.context_right)
        self.input_dim = int(manifest["input_dim"])
        self.reference = rep.ref_from_stable(manifest["reference_stable_points"])
        self.neutral = np.asarray(manifest["generic_neutral"], np.float32).reshape(rep.N_POINTS, 3)
        self.typical_open = float(manifest["typical_open"])
        # How the training mouths move per unit of aperture (``representation.opening_pattern``);
        # models exported before it was recorded have none (calibration then scales whole frames).
        pattern = manifest.get("opening_pattern")
        self.opening = None if pattern is None else np.asarray(pattern, np.float32).reshape(rep.N_POINTS, 3)
        if tuple(manifest["mouth_points"]) != rep.MOUTH_POINTS:
            raise MissingDependencyError("motion model manifest lists other mouth points than this lipdub")
        from lipdub.audio.features import front_end

        # A model reads the features it was trained on: older ones (no "front_end") read 30 s
        # zero-padded Whisper windows, whose states differ from today's.
        trained_on = manifest.get("front_end", {"features_version": 1})
        made_here = front_end()
        if trained_on != made_here:
            raise MissingDependencyError(
                f"motion model {onnx_path} was trained on audio features {trained_on}; this lipdub "
                f"makes {made_here}: retrain it (python -m lipdub.motion.train)")

    @classmethod
    def load(cls, path: str | Path | None = None, threads: int = 1) -> "MotionModel":
        """The shipped model (or ``path`` to another ``.onnx`` with its ``*_manifest.json``;
        ``$LIPDUB_MOTION_MODEL`` names one for the whole process, e.g. a benchmark's fold model)."""
        path = path or os.environ.get("LIPDUB_MOTION_MODEL") or None
        onnx_path = Path(path) if path else ONNX_PATH
        manifest_path = onnx_path.with_name(onnx_path.stem + "_manifest.json")
        if not onnx_path.is_file() or not manifest_path.is_file():
            raise MissingDependencyError(
                f"motion model {onnx_path} is missing; reinstall lipdub or run python -m lipdub.motion.train")
        return _load_cached(str(onnx_path), str(manifest_path), threads)

    def run(self, x: np.ndarray, left: int = 0, right: int = 0) -> np.ndarray:
        """Raw offsets ``(N - left - right, P)`` of prepared input ``(N, F)`` with context frames."""
        x = np.asarray(x, np.float32)
        cl, cr = self.context_left, self.context_right
        pad_l, pad_r = max(0, cl - left), max(0, cr - right)
        xp = np.concatenate([np.repeat(x[:1], pad_l, 0), x, np.repeat(x[-1:], pad_r, 0)])
        start = left - cl if left > cl else 0
        stop = len(xp) - (right - cr if right > cr else 0)
        out = self.session.run(None, {"features": xp[None, start:stop]})[0][0]
        return out

    def predict(self, features, left: int = 0, right: int = 0, gate: bool = True) -> MotionPrediction:
        """Canonical mouth per frame from ``AudioFeatures`` (or any object with whisper/mel/vad)."""
        x = _features_input(features)
        return self.predict_input(x, np.asarray(features.vad, np.float32), left, right, gate)

    def predict_input(self, x: np.ndarray, vad: np.ndarray, left: int = 0, right: int = 0,
                      gate: bool = True) -> MotionPrediction:
        off = self.run(x, left, right).reshape(-1, rep.N_POINTS, 3)
        n = len(off)
        g = silence_gate(vad)[left:left + n] if gate else np.ones(n, np.float32)
        off = off * g[:, None, None]
        return MotionPrediction(off.astype(np.float32), (self.neutral + off).astype(np.float32), g)


@lru_cache(maxsize=4)
def _load_cached(onnx_path: str, manifest_path: str, threads: int) -> MotionModel:
    manifest = json.loads(Path(manifest_path).read_text())
    return MotionModel(Path(onnx_path), manifest, threads)


def smooth_motion(offsets: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian temporal smoothing (``sigma`` in frames; 0 = none) of ``(N, ...)`` offsets."""
    if sigma <= 0 or len(offsets) < 2:
        return offsets
    return gaussian_filter1d(offsets, sigma, axis=0, mode="nearest").astype(np.float32)
