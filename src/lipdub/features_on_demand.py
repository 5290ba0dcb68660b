"""Audio features for ``generate``, computed as the frame loop reaches them.

``lipdub.audio.extract_features`` computes every frame's features before returning: for 10 minutes
of speech that is ~200 short Whisper windows (tens of seconds on a busy 2-core machine) before the first frame,
and 100 MB of arrays held to the end. Here the same values come out chunk by chunk, bit for bit:

- ``WhisperStates``: the Whisper encoder window(s) a slice of frames needs are run when it is
  asked for (a few kept for the neighbouring chunks), with the cross-fade weights of
  ``WhisperEncoder.frame_features``, accumulated in the same order;
- ``MelWindows``: the (80, 16) windows cut from the log-mel spectrogram (0.3 KB a frame instead
  of 5 KB);
- voice activity (recurrent, and cheap) is computed up front, while the Whisper model loads.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

KEEP_WINDOWS = 8  # encoder windows kept: consecutive chunks (with their context) reuse them


class MelWindows:
    """``AudioFeatures.mel`` cut from the log-mel spectrogram when sliced: the same values as
    ``lipdub.audio.mel_windows``. Held whole, the windows take 5 KB a frame (77 MB for 10 minutes
    of audio); the spectrogram 0.3 KB."""

    def __init__(self, spec: np.ndarray, fps: float, n_frames: int):
        from lipdub.audio.mel import MEL_STEPS, mel_window_starts

        self.spec = spec
        self.starts = mel_window_starts(fps, n_frames)
        self.steps = np.arange(MEL_STEPS)
        self.shape = (int(n_frames), spec.shape[0], MEL_STEPS)
        self.dtype = np.dtype(np.float32)
        self.ndim = 3

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        starts = self.starts[key]
        columns = np.clip(np.atleast_1d(starts)[:, None] + self.steps[None, :], 0, self.spec.shape[1] - 1)
        out = np.ascontiguousarray(self.spec[:, columns].transpose(1, 0, 2), dtype=np.float32)
        return out if np.ndim(starts) else out[0]

    def __array__(self, dtype=None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)


class WhisperStates:
    """``AudioFeatures.whisper`` whose rows are computed when sliced: for the frames asked, the
    encoder windows that cover them are run (``encoder``: a ``WhisperEncoder`` or a future of
    one) and blended exactly as ``WhisperEncoder.frame_features`` does."""

    def __init__(self, wav: np.ndarray, fps: float, n_frames: int, encoder,
                 window_seconds: float | None = None, hop_seconds: float | None = None):
        from lipdub.audio import whisper
        from lipdub.audio.timing import SAMPLE_RATE, frame_times

        # The encoder may still be loading (a future): its windows are the defaults unless given.
        self.window_seconds = window_seconds or whisper.WINDOW_SECONDS
        self.hop_seconds = hop_seconds or whisper.HOP_SECONDS
        self.window_samples = int(round(self.window_seconds * SAMPLE_RATE))
        self.wav = wav
        self.times = frame_times(fps, n_frames)
        self.starts = whisper.window_starts(len(wav), self.hop_seconds, self.window_seconds)
        self.shares = whisper.window_weights(self.times, self.starts / SAMPLE_RATE, self.window_seconds)
        self.shape = (int(n_frames), whisper.FEATURE_DIM)
        self.rate = SAMPLE_RATE
        self.dtype = np.dtype(np.float32)
        self.ndim = 2
        self._encoder = encoder
        self._windows: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return self.shape[0]

    def _states(self, k: int) -> np.ndarray:
        if k not in self._windows:
            encoder = self._encoder.result() if hasattr(self._encoder, "result") else self._encoder
            if (encoder.window_seconds, encoder.hop_seconds) != (self.window_seconds, self.hop_seconds):
                raise ValueError("WhisperStates was built for other windows than its encoder's")
            self._encoder = encoder
            start = int(self.starts[k])
            self._windows[k] = encoder.window_states(self.wav[start:start + self.window_samples])
            while len(self._windows) > KEEP_WINDOWS:  # forget the window farthest from this one
                del self._windows[max(self._windows, key=lambda j: abs(j - k))]
        return self._windows[k]

    def __getitem__(self, key) -> np.ndarray:
        from lipdub.audio.whisper import interpolate_states

        if isinstance(key, slice):
            r0, r1, step = key.indices(self.shape[0])
            if step != 1:
                return self[r0:r1][::step]
        else:
            rows = np.arange(self.shape[0])[key]
            if np.ndim(rows) == 0:
                return self[int(rows):int(rows) + 1][0]
            r0, r1 = int(rows.min()), int(rows.max()) + 1
            return self[r0:r1][rows - r0]
        out = np.zeros((max(0, r1 - r0), self.shape[1]), dtype=np.float32)
        for k, (first, stop, weight) in enumerate(self.shares):
            lo, hi = max(first, r0), min(stop, r1)
            if hi <= lo:
                continue
            offsets = self.times[lo:hi] - int(self.starts[k]) / self.rate
            out[lo - r0:hi - r0] += weight[lo - first:hi - first, None] * interpolate_states(self._states(k), offsets)
        return out

    def __array__(self, dtype=None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)


def on_demand_features(wav: np.ndarray, fps: float, vad: bool = True):
    """``AudioFeatures`` of 16 kHz mono ``wav`` with whisper and mel computed when sliced; the
    Whisper model loads beside the log-mel and voice activity."""
    from lipdub.audio import AudioFeatures, WhisperEncoder, n_frames_for, voice_activity
    from lipdub.audio.mel import log_mel

    n_frames = n_frames_for(wav, fps)
    pool = ThreadPoolExecutor(1, thread_name_prefix="lipdub-whisper-load")
    # One thread: generate's other core belongs to the video encoder, a 6 s window takes
    # ~25 ms on one, and a second worker thread would only contend with the encoder.
    encoder = pool.submit(WhisperEncoder, threads=1)
    pool.shutdown(wait=False)
    spec = log_mel(wav)
    activity = voice_activity(wav, fps, n_frames) if vad else None
    return AudioFeatures(fps=float(fps), n_frames=int(n_frames), duration=len(wav) / 16000,
                         mel=MelWindows(spec, fps, n_frames),
                         whisper=WhisperStates(wav, fps, n_frames, encoder), vad=activity)
