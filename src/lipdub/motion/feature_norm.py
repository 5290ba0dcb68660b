"""Per-recording mean normalisation of the Whisper part of the model input (an ablation option).

The idea is cepstral mean normalisation: a voice the model never heard (timbre, microphone, room)
shifts every frame's encoder state by a roughly constant amount, so subtracting the recording's own
mean state should leave mostly *what is being said*. The mean is taken from the clip's own input
only (never from its targets or other clips), weighted towards speech frames (the input's voice
activity column, ``> 0.5``); silence frames get a small weight ``SILENCE_WEIGHT`` so a clip that
starts silent still has a defined mean.

Modes:

- ``"utterance"``: one mean per clip, over all its frames (needs the whole recording; an upper
  bound of what the idea can give).
- ``"causal"``: an exponential running mean (time constant ``seconds``) over the frames *up to and
  including* the current one. Streaming can reproduce it exactly: it is a recursive filter over
  frames already received, so it adds no look-ahead. Its first frames rest on little evidence
  (frame 0 is normalised by itself alone, i.e. to zero).

``parts``: the Whisper columns only (``"whisper"``), or the pooled log-mel columns too
(``"whisper+mel"``: on the log-mel this is cepstral mean normalisation proper, removing loudness and
a fixed channel colouring). The voice activity column is never changed.

Measured (development folds, 1 model per fold, seed 0; ``motion_ablation.json`` rows ``s5_*``): it
does not help. Clean r at lag 0: control 0.538, utterance 0.536, utterance with the log-mel 0.522,
causal 4 s 0.498, causal 30 s 0.501 (the causal loss is largest on clips under 4 s: their first
seconds are normalised by a mean of a few frames). Only ~3.5 % of the Whisper states' variance
during speech lies between recordings, so there is little offset to remove.
"""

from __future__ import annotations

import numpy as np

from lipdub.motion import representation as rep

MODES = ("none", "utterance", "causal")
PARTS = ("whisper", "whisper+mel")
#: Weight of a non-speech frame relative to a speech frame in the mean.
SILENCE_WEIGHT = 0.02


def frame_weights(vad: np.ndarray) -> np.ndarray:
    """Per-frame weight of the mean: 1 during speech, ``SILENCE_WEIGHT`` elsewhere."""
    return np.where(np.asarray(vad) > 0.5, 1.0, SILENCE_WEIGHT)


def running_mean(x: np.ndarray, weights: np.ndarray, tau_frames: float) -> np.ndarray:
    """Causal weighted exponential mean ``(N, D)``: row t uses rows 0..t of ``x`` only.

    ``m_t = sum_s<=t d^(t-s) w_s x_s / sum_s<=t d^(t-s) w_s`` with ``d = exp(-1 / tau_frames)``;
    ``tau_frames = inf`` gives the cumulative mean.
    """
    from scipy.signal import lfilter

    x = np.asarray(x, np.float64)
    w = np.asarray(weights, np.float64)
    d = 0.0 if tau_frames <= 0 else float(np.exp(-1.0 / tau_frames))
    num = lfilter([1.0], [1.0, -d], w[:, None] * x, axis=0)
    den = lfilter([1.0], [1.0, -d], w)
    return num / np.maximum(den, 1e-12)[:, None]


def normalise_input(x: np.ndarray, mode: str = "none", seconds: float = 4.0,
                    fps: float = 25.0, parts: str = "whisper") -> np.ndarray:
    """``x`` (prepared input ``(N, INPUT_DIM)``, voice activity in the last column) with its
    Whisper (and with ``parts="whisper+mel"`` log-mel) columns mean-normalised by ``mode``."""
    if mode == "none" or len(x) == 0:
        return x
    if mode not in MODES or parts not in PARTS:
        raise ValueError(f"input normalisation {mode!r} of {parts!r}: expected {MODES} of {PARTS}")
    cols = rep.WHISPER_DIM if parts == "whisper" else rep.INPUT_DIM - 1
    w = frame_weights(x[:, -1])
    wh = np.asarray(x[:, :cols], np.float64)
    if mode == "utterance":
        mean = (w[:, None] * wh).sum(0, keepdims=True) / w.sum()
    else:
        mean = running_mean(wh, w, seconds * fps)
    out = np.array(x, np.float32, copy=True)
    out[:, :cols] = (wh - mean).astype(np.float32)
    return out


def normalise_clips(clips, mode: str, seconds: float = 4.0, fps: float = 25.0,
                    parts: str = "whisper") -> None:
    """In place: every clip's input and augmented views, each from its own frames only."""
    if mode == "none":
        return
    for c in clips:
        c.x = normalise_input(c.x, mode, seconds, fps, parts)
        c.views = [normalise_input(v, mode, seconds, fps, parts) for v in c.views]
