"""Per-avatar calibration: predicted canonical mouth motion → this avatar's lips, in each frame's pose.

Three steps per output frame:
1. amplitude: a monotone map (quantile matching) from the model's predicted inner-lip aperture to
   the avatar's own real one, fitted during speech: for footage with speech, on the avatar's own
   audio and tracked mouth (``fit_avatar_map``, cached in the avatar folder); for photos, silent
   or near-static footage, the corpus map shipped in the model manifest (fitted the same way on
   held-out predictions of the training speakers). The map fixes the aperture: the frame's whole
   shape is scaled by the map's factor ``f(a) / a`` at its aperture, but by no more than the map's
   typical factor, and the rest of the opening is made along the model's opening pattern (how
   mouths move as they open: the jaw drops with the lips). Near closure ``f(a) / a`` reaches
   ``MAX_GAIN``, and scaling a closing mouth's whole shape by it drew lips pressed or spread
   three times as far as predicted. ``f(0) = 0``: silence
   (gated to zero offsets) stays at the neutral mouth, and low predicted apertures map to the real
   mouth's closures (p/b/m close fully). Then the user's ``mouth_scale``;
2. shape: the scaled offsets are added to the avatar's *own* neutral closed mouth (measured from
   its prepared track the same way training measured each speaker's);
3. pose: the pose part of the chosen template frame's own jaw line (``lipdub.motion.pose``: a
   turned head's jaw line is a silhouette, which the 2-D alignment does not undo) is added, and
   the result is mapped out of the canonical frame by the inverse of the similarity that
   aligned that frame, so the mouth follows the head.

Output frames are full ``(478, 3)`` landmark sets: the template frame's own landmarks with the
mouth and jaw points replaced, so renderers can use any index set they like.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lipdub.motion import representation as rep
from lipdub.motion.model import smooth_motion
from lipdub.motion.pose import pose_deformation, pose_points

#: Per-frame amplitude factor limits (a map is only as good as the footage it was fitted on).
MAX_GAIN = 3.0
#: Speech frames an avatar's own map needs (4 s); below it the corpus map is used.
MIN_SPEECH_FRAMES = 100
#: Quantile levels the maps match (during speech).
QUANTILES = tuple(np.round(np.linspace(0.02, 0.98, 25), 3))
#: Cached per-avatar map, in the avatar folder.
CALIBRATION_FILE = "motion_calibration.json"


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


@dataclass(frozen=True)
class AmplitudeMap:
    """Monotone piecewise-linear map of canonical aperture, through (0, 0); constant gain beyond."""

    x: tuple[float, ...] = (1.0,)
    y: tuple[float, ...] = (1.0,)
    source: str = "identity"

    def __call__(self, a: np.ndarray) -> np.ndarray:
        xs = np.concatenate([[0.0], self.x])
        ys = np.concatenate([[0.0], self.y])
        a = np.asarray(a, np.float64)
        out = np.interp(a, xs, ys)
        beyond = a > xs[-1]
        out[beyond] = a[beyond] * (ys[-1] / xs[-1])
        return out

    def gains(self, a: np.ndarray) -> np.ndarray:
        """Per-frame factor ``f(a) / a`` (the first segment's slope at or below 0), clipped."""
        a = np.asarray(a, np.float64)
        low = self.y[0] / self.x[0]
        safe = np.where(a > 1e-6, a, 1.0)
        g = np.where(a > 1e-6, self(safe) / safe, low)
        return np.clip(g, 0.0, MAX_GAIN).astype(np.float32)

    def typical_gain(self) -> float:
        """The factor at the median of the map's inputs (a typical speech aperture): at most this
        scales a frame's shape besides its opening (``apply``)."""
        return float(self.gains(np.array([float(np.median(self.x))]))[0])

    def to_dict(self) -> dict:
        return {"x": [round(float(v), 6) for v in self.x], "y": [round(float(v), 6) for v in self.y],
                "source": self.source}

    @classmethod
    def from_dict(cls, d: dict | None) -> "AmplitudeMap":
        if not d:
            return cls()
        return cls(tuple(float(v) for v in d["x"]), tuple(float(v) for v in d["y"]),
                   d.get("source", "stored"))


def fit_amplitude_map(pred: np.ndarray, real: np.ndarray, weights: np.ndarray | None = None,
                      source: str = "fitted") -> AmplitudeMap:
    """Quantile matching of predicted to real apertures (both taken during speech).

    Pairs the two distributions at ``QUANTILES``; keeps pairs with a predicted aperture above 0
    (the map goes through the origin), makes ``x`` strictly and ``y`` weakly increasing and
    ``y >= 0`` (a predicted near-closure maps to a closed mouth, never to a flipped one).
    """
    pred = np.asarray(pred, np.float64).ravel()
    real = np.asarray(real, np.float64).ravel()
    ok = np.isfinite(pred) & np.isfinite(real)
    w = None if weights is None else np.asarray(weights, np.float64).ravel()[ok]
    qx = _quantiles(pred[ok], QUANTILES, w)
    qy = _quantiles(real[ok], QUANTILES, w)
    keep = qx > 1e-4
    if keep.sum() < 2:
        return AmplitudeMap(source=f"{source} (too little motion: identity)")
    xs, ys = qx[keep], np.maximum(qy[keep], 0.0)
    xs = np.maximum.accumulate(xs + np.arange(len(xs)) * 1e-6)
    ys = np.maximum.accumulate(ys)
    if ys[-1] <= 0:
        return AmplitudeMap(source=f"{source} (real mouth never opens: identity)")
    return AmplitudeMap(tuple(xs), tuple(ys), source)


def fit_face_map(corpus: AmplitudeMap, real: np.ndarray, source: str = "face") -> AmplitudeMap:
    """Map the model's corpus-wide predicted quantiles (``corpus.x``, many voices) to this face's
    real speech apertures at the same quantile levels: the avatar's range without its own voice."""
    real = np.asarray(real, np.float64)
    real = real[np.isfinite(real)]
    if len(corpus.x) > len(QUANTILES) or corpus.source == "identity" or len(real) < 5:
        return corpus
    levels = np.asarray(QUANTILES)[-len(corpus.x):]
    ys = np.maximum.accumulate(np.maximum(np.quantile(real, levels), 0.0))
    if ys[-1] <= 0:
        return corpus
    return AmplitudeMap(tuple(corpus.x), tuple(ys), source)


def _quantiles(v: np.ndarray, q, w: np.ndarray | None) -> np.ndarray:
    if w is None:
        return np.quantile(v, q)
    order = np.argsort(v)
    cw = np.cumsum(w[order])
    cw = (cw - 0.5 * w[order]) / cw[-1]
    return np.interp(q, cw, v[order])


@dataclass
class Calibration:
    landmarks: np.ndarray    # (M, 478, 3) the avatar's template track, pixels
    matrices: np.ndarray     # (M, 2, 3) pixel → canonical similarity per template frame
    factor: float            # canonical inter-ocular factor of this avatar
    neutral: np.ndarray      # (K, 3) the avatar's neutral mouth, canonical
    amplitude: AmplitudeMap = field(default_factory=AmplitudeMap)
    gain: float = 1.0        # a constant factor on top of the map (kept for callers that set it)
    pose: np.ndarray | None = None  # (M, K, 3) each frame's pose part of its mouth (``pose.py``)
    opening: np.ndarray | None = None  # (K, 3) the model's offsets per unit of aperture

    @property
    def n_frames(self) -> int:
        return len(self.landmarks)


def calibrate(landmarks: np.ndarray, model, match_range: bool = True,
              amplitude: AmplitudeMap | dict | None = None,
              usable: np.ndarray | None = None) -> Calibration:
    """Measure an avatar from its prepared track ``(M, 478, 3)`` (pixels, gaps already filled).

    ``amplitude``: the avatar's own map (``avatar_amplitude_map``); default the model's corpus map.
    ``match_range=False`` keeps the model's raw amplitude. ``usable``: the frames that show the
    dubbed face (default all); the neutral mouth and the pose parts are measured on them only, not
    on frames held across a gap or another person's shot.
    """
    lm = np.asarray(landmarks, np.float32)
    if lm.ndim == 2:
        lm = lm[None]
    if lm.ndim != 3 or lm.shape[1] != 478 or not np.isfinite(lm).all():
        raise ValueError(f"expected a gap-free landmark track (M, 478, 3), got {lm.shape}")
    mouth, matrices, factor = rep.to_canonical(lm, model.reference)
    use = np.ones(len(lm), bool) if usable is None else np.asarray(usable, bool)[:len(lm)]
    if not use.any():
        use = np.ones(len(lm), bool)
    neutral = rep.neutral_shape(mouth[use])
    pose_part = pose_deformation(pose_points(lm, matrices, factor), mouth, neutral, use)
    if not match_range:
        amp = AmplitudeMap()
    elif isinstance(amplitude, AmplitudeMap):
        amp = amplitude
    else:
        amp = AmplitudeMap.from_dict(amplitude or model.manifest.get("corpus_amplitude_map"))
    return Calibration(lm, matrices, factor, neutral.astype(np.float32), amp, pose=pose_part,
                       opening=getattr(model, "opening", None))


def fit_avatar_map(features, landmarks: np.ndarray, model, smooth: float = 1.0,
                   usable: np.ndarray | None = None) -> dict | None:
    """The avatar's own amplitude map (JSON-able), or None when its footage has too little speech.

    ``features``: the avatar's stored ``AudioFeatures`` (its own audio, one row per track frame);
    ``landmarks``: its prepared ``(M, 478, 3)`` track. The model predicts the avatar's own speech;
    the predicted apertures (gated and smoothed as at generation) are matched to its tracked ones
    over the frames where voice activity is on (and ``usable``: frames showing the dubbed face).
    """
    lm = np.asarray(landmarks, np.float32)
    n = min(len(lm), int(features.n_frames))
    measured = _speech_apertures(features, model, smooth, n, usable)
    if measured is None:
        return None
    pred_ap, speech = measured
    mouth, _, _ = rep.to_canonical(lm[:n], model.reference)
    real_ap = rep.aperture((mouth - rep.neutral_shape(mouth)).reshape(n, -1))
    amp = fit_amplitude_map(pred_ap[speech], real_ap[speech], source="avatar")
    out = amp.to_dict()
    out.update(speech_frames=int(speech.sum()), real_mean=round(float(real_ap[speech].mean()), 5),
               pred_mean=round(float(pred_ap[speech].mean()), 5))
    return out


def model_id(model) -> str:
    """What a cached map was fitted with: the shipped manifest's command + sizes (cheap, stable)."""
    import hashlib

    m = model.manifest
    digest = hashlib.sha1(json.dumps([m.get("command"), m.get("corpus_amplitude_map"),
                                      m.get("delay_frames", 0)]).encode()).hexdigest()[:12]
    return f"{m.get('onnx_bytes')}:{m.get('params')}:{digest}"


def avatar_amplitude_map(avatar, model) -> AmplitudeMap:
    """The avatar's own map, fitted once and cached (atomically) in its folder; else the corpus map.

    Photos, silent footage and footage with under ``MIN_SPEECH_FRAMES`` of speech use the corpus
    map. An unwritable avatar folder only loses the cache.
    """
    corpus = AmplitudeMap.from_dict(model.manifest.get("corpus_amplitude_map"))
    manifest = getattr(avatar, "manifest", {}) or {}
    folder = getattr(avatar, "path", None)
    if manifest.get("kind") == "photo" or not manifest.get("has_features", True) or folder is None:
        return corpus
    path = Path(folder) / CALIBRATION_FILE
    mid = model_id(model)
    try:
        cached = json.loads(path.read_text())
        if cached.get("model") == mid:
            return AmplitudeMap.from_dict(cached["map"]) if cached.get("map") else corpus
    except (OSError, ValueError, KeyError):
        pass
    features = getattr(avatar, "features", None)
    if callable(features):
        features = features()
    own = getattr(avatar, "dub_weight", None)
    usable = None if own is None else np.asarray(own) > 0
    fitted = (None if features is None else
              fit_avatar_map(features, np.asarray(avatar.landmarks), model, usable=usable))
    write_calibration(path, {"model": mid, "map": fitted})
    return AmplitudeMap.from_dict(fitted) if fitted else corpus


def prepare_calibration(avatar, model=None) -> AmplitudeMap:
    """Fit and store an avatar's amplitude map now (``prepare`` calls it, so generate need not)."""
    from lipdub.motion.model import MotionModel

    return avatar_amplitude_map(avatar, model or MotionModel.load())


def write_calibration(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)


#: Seconds of driving audio (from its start) whose predicted apertures describe its voice.
VOICE_SECONDS = 12.0
#: How far the voice match may move the map's inputs (ratio of quantiles, either way).
MAX_VOICE_RATIO = 2.0


def match_voice(cal: Calibration, features, model, smooth: float = 1.0) -> Calibration:
    """``cal`` with its amplitude map re-keyed to the driving voice.

    The model's apertures depend on the voice as well as on the words: a map fitted on the
    avatar's own voice leaves the mouth half-closed for a voice the model hears as less open
    (such maps are steep near closure). ``features``: the start of the driving audio
    (``VOICE_SECONDS``). The map's inputs (the predicted quantiles of the voice it was fitted on)
    are replaced by this voice's predicted quantiles at the same levels, measured the way
    ``fit_avatar_map`` measures them, so this voice's typical opening gets the avatar's typical
    opening; ranks, and so timing, are unchanged. Too little speech (under
    ``MIN_SPEECH_FRAMES``) or an identity map: ``cal`` unchanged."""
    from dataclasses import replace

    amp = cal.amplitude
    # An identity map (the default, or a fit that fell back to it) has no quantiles to re-key.
    if len(amp.x) < 2 or "identity" in amp.source or len(amp.x) > len(QUANTILES):
        return cal
    measured = _speech_apertures(features, model, smooth)
    if measured is None:
        return cal
    pred_ap, speech = measured
    levels = np.asarray(QUANTILES)[-len(amp.x):]
    own = np.asarray(amp.x)
    voice = np.clip(np.quantile(pred_ap[speech], levels), own / MAX_VOICE_RATIO, own * MAX_VOICE_RATIO)
    voice = np.maximum.accumulate(np.maximum(voice, 1e-4) + np.arange(len(voice)) * 1e-6)
    return replace(cal, amplitude=AmplitudeMap(tuple(voice), amp.y, f"{amp.source}, voice-matched"))


def _speech_apertures(features, model, smooth: float, n: int | None = None,
                      usable: np.ndarray | None = None):
    """(predicted aperture per frame, speech mask) for the first ``n`` frames of ``features``, as
    generation would draw them (gated, smoothed); None with under ``MIN_SPEECH_FRAMES`` of
    steady speech (voice activity on, the silence gate fully open, ``usable``)."""
    from lipdub.audio.vad import speech_mask
    from lipdub.motion.model import silence_gate

    n = int(features.n_frames) if n is None else n
    if n < MIN_SPEECH_FRAMES or features.whisper is None or features.vad is None:
        return None
    vad = np.asarray(features.vad, np.float32)[:n]
    # (not motion.offsets.speech_mask_of: that module pulls in torch, which generate never needs)
    speech = np.asarray(speech_mask(vad), bool) & (silence_gate(vad) >= 1.0)
    if usable is not None:
        speech &= np.asarray(usable, bool)[:n]
    if speech.sum() < MIN_SPEECH_FRAMES:
        return None
    pred = model.predict(features).offsets[:n]
    return rep.aperture(smooth_motion(pred, smooth).reshape(n, -1)), speech


def calibrate_avatar(avatar, model, match_range: bool = True) -> Calibration:
    """``calibrate`` with the avatar's own amplitude map (or the corpus map): what generate and
    streaming use. The neutral mouth is measured only on frames where the dubbed person's face
    is usable (``dub_weight > 0``), not on frames held across a gap or another person's shot."""
    landmarks = np.asarray(avatar.landmarks)
    amp = avatar_amplitude_map(avatar, model) if match_range else None
    own = getattr(avatar, "dub_weight", None)
    usable = None if own is None else np.asarray(own)[:len(landmarks)] > 0
    return calibrate(landmarks, model, match_range, amplitude=amp, usable=usable)


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
    off = smooth_motion(off, options.motion_smooth)
    scale = cal.gain * options.mouth_scale
    if options.match_range:
        ap = rep.aperture(off.reshape(n, -1))
        gain = cal.amplitude.gains(ap)
        if cal.opening is None:
            off = off * (gain * scale)[:, None, None]
        else:
            # The same aperture as scaling the whole frame by ``gain``; the rest of the shape is
            # scaled by ``gain`` too, but never by more than the map's typical factor.
            rest = np.minimum(gain, cal.amplitude.typical_gain())
            off = scale * (rest[:, None, None] * off
                           + ((gain - rest) * ap)[:, None, None] * cal.opening[None])
    else:
        off = off * scale
    off = rep.limit_closing(off, cal.neutral)
    # Each template frame keeps the pose part of its own mouth shape: the new mouth sits where
    # that frame's head pose puts one, not where a frontal neutral would.
    pose_part = 0.0 if cal.pose is None else cal.pose[idx]
    mouth = rep.uncross_lips(cal.neutral[None] + pose_part + off, cal.neutral)
    pixels = rep.from_canonical(mouth, cal.matrices[idx], cal.factor)
    out = cal.landmarks[idx].copy()
    out[:, list(rep.MOUTH_POINTS)] = pixels
    return out
