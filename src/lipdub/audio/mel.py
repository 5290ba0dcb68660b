"""Wav2Lip-style log-mel spectrogram and the per-frame 16-step mel windows a lip-sync model eats.

Parameters follow Wav2Lip's ``hparams``: 16 kHz, pre-emphasis 0.97, STFT n_fft 800 / hop 200 /
Hann window 800 (80 mel frames per second), 80 Slaney mel bins from 55 to 7600 Hz applied to the
*magnitude*, dB with ref level 20 and floor -100, then a symmetric normalisation clipped to [-4, 4].
The filterbank is built here (librosa's Slaney formula) so librosa is not a dependency.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from lipdub.audio.timing import SAMPLE_RATE, as_mono_float, frame_times, n_frames_for

N_FFT = 800
HOP = 200
WIN = 800
N_MELS = 80
FMIN = 55.0
FMAX = 7600.0
PREEMPHASIS = 0.97
REF_LEVEL_DB = 20.0
MIN_LEVEL_DB = -100.0
MAX_ABS_VALUE = 4.0
#: Mel frames per second (16000 / 200); mel frame ``j`` is centred on ``j / MEL_FPS`` seconds.
MEL_FPS = SAMPLE_RATE / HOP
#: Mel steps per video frame window, as Wav2Lip's SyncNet and generator expect.
MEL_STEPS = 16

# STFT frames are computed this many at a time so an hour of audio never materialises as one
# (frames x 800) matrix (that would be ~1 GB); a block's complex spectrum is 6.6 MB.
_FRAMES_PER_BLOCK = 1024
#: Samples pre-emphasised at a time (4 MB temporaries).
_SAMPLES_PER_BLOCK = 1 << 20

# Slaney mel scale: linear below 1 kHz, logarithmic above (librosa's htk=False default).
_F_SP = 200.0 / 3.0
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = math.log(6.4) / 27.0


def hz_to_mel(hz: np.ndarray) -> np.ndarray:
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / _F_SP
    log = _MIN_LOG_MEL + np.log(np.maximum(hz, 1e-10) / _MIN_LOG_HZ) / _LOGSTEP
    return np.where(hz >= _MIN_LOG_HZ, log, linear)


def mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    linear = mel * _F_SP
    log = _MIN_LOG_HZ * np.exp(_LOGSTEP * (mel - _MIN_LOG_MEL))
    return np.where(mel >= _MIN_LOG_MEL, log, linear)


def mel_filterbank(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Slaney-normalised triangular mel filters, shape ``(n_mels, n_fft // 2 + 1)``.

    Same construction as ``librosa.filters.mel(htk=False, norm="slaney")``: triangles between
    neighbouring mel-spaced edges, each scaled to constant area so wide high bands are not louder.
    """
    fft_freqs = np.fft.rfftfreq(n_fft, d=1.0 / sr)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights


@lru_cache(maxsize=1)
def _wav2lip_filterbank() -> np.ndarray:
    return mel_filterbank(SAMPLE_RATE, N_FFT, N_MELS, FMIN, FMAX).astype(np.float32)


def _preemphasised_padded(wav: np.ndarray) -> np.ndarray:
    """The pre-emphasised signal with librosa's centred padding, built in one buffer: a long
    file's audio is not copied twice more (10 min: 38 MB a copy)."""
    half, n = N_FFT // 2, len(wav)
    padded = np.zeros(n + 2 * half, dtype=np.float32)
    body = padded[half:half + n]
    body[:] = wav
    for start in range(1, n, _SAMPLES_PER_BLOCK):  # blocks: no full-length temporary either
        stop = min(n, start + _SAMPLES_PER_BLOCK)
        body[start:stop] -= PREEMPHASIS * wav[start - 1:stop - 1]
    # Reflect padding (Wav2Lip's librosa default) needs more samples than the pad width; shorter
    # signals keep the zeros.
    if n > half:
        padded[:half] = body[half:0:-1]
        padded[half + n:] = body[-2:-half - 2:-1]
    return padded


def _mel_magnitude(padded: np.ndarray, n_frames: int) -> np.ndarray:
    """Mel filter bank times |STFT| with librosa's centred framing, ``(N_MELS, n_frames)``.

    Frames are transformed and filtered a block at a time: the (n_fft / 2 + 1)-row magnitude of a
    10-minute file would take 77 MB, its complex spectrum 300 MB, against 15 MB for the result."""
    # Periodic Hann (librosa's/scipy's "hann" for spectral analysis), not the symmetric one.
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(WIN) / WIN)).astype(np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP][:n_frames]
    bank = _wav2lip_filterbank()
    out = np.empty((bank.shape[0], n_frames), dtype=np.float32)
    for start in range(0, n_frames, _FRAMES_PER_BLOCK):
        block = frames[start:start + _FRAMES_PER_BLOCK] * window
        magnitude = np.abs(np.fft.rfft(block, axis=1)).astype(np.float32)
        out[:, start:start + len(block)] = bank @ magnitude.T
    return out


def log_mel(audio: np.ndarray) -> np.ndarray:
    """Wav2Lip's normalised log-mel of 16 kHz audio: float32 ``(80, 1 + len // 200)`` in [-4, 4].

    Column ``j`` is centred on time ``j / 80`` s.
    """
    wav = as_mono_float(audio)
    mel = _mel_magnitude(_preemphasised_padded(wav), 1 + len(wav) // HOP)
    min_amplitude = 10.0 ** (MIN_LEVEL_DB / 20.0)
    db = 20.0 * np.log10(np.maximum(min_amplitude, mel)) - REF_LEVEL_DB
    scaled = 2.0 * MAX_ABS_VALUE * (db - MIN_LEVEL_DB) / (-MIN_LEVEL_DB) - MAX_ABS_VALUE
    return np.clip(scaled, -MAX_ABS_VALUE, MAX_ABS_VALUE).astype(np.float32)


def mel_window_starts(fps: float, n_frames: int) -> np.ndarray:
    """First mel column of each frame's window, chosen so the 16 columns are centred on ``t_i``.

    The window covers columns ``c - 8 .. c + 7`` with ``c = round(80 t_i)``, so its centre is
    within half a mel step (6 ms) of ``t_i``.
    """
    centres = np.floor(frame_times(fps, n_frames) * MEL_FPS + 0.5).astype(np.int64)
    return centres - MEL_STEPS // 2


def mel_windows(audio: np.ndarray, fps: float, n_frames: int | None = None,
                mel: np.ndarray | None = None) -> np.ndarray:
    """One ``(80, 16)`` mel window per video frame, centred on ``t_i``: float32 ``(N, 80, 16)``.

    Columns before the start or past the end repeat the first/last column (edge padding).
    ``mel`` may pass a precomputed :func:`log_mel` of ``audio`` to avoid recomputing it.
    """
    wav = as_mono_float(audio)
    if n_frames is None:
        n_frames = n_frames_for(wav, fps)
    spec = log_mel(wav) if mel is None else mel
    columns = mel_window_starts(fps, n_frames)[:, None] + np.arange(MEL_STEPS)[None, :]
    columns = np.clip(columns, 0, spec.shape[1] - 1)
    return np.ascontiguousarray(spec[:, columns].transpose(1, 0, 2), dtype=np.float32)
