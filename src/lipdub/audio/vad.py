"""Voice activity per video frame from Silero VAD's ONNX model, plus a hysteresis mask.

Only the ``.onnx`` file of the ``silero-vad`` wheel is used (installed with ``--no-deps``): the
package itself is never imported because its ``__init__`` pulls in torch and torchaudio. The
v5/v6 model is a streaming LSTM: each call takes one 512-sample chunk (32 ms at 16 kHz) with the
last 64 samples of the previous chunk prepended, the recurrent ``state`` (2, 1, 128) and ``sr``,
and returns the speech probability of that chunk and the next state.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np

from lipdub.audio.timing import SAMPLE_RATE, as_mono_float, frame_times, n_frames_for
from lipdub.errors import MissingDependencyError

CHUNK = 512
CONTEXT = 64
STATE_SHAPE = (2, 1, 128)
# The LSTM decides about a chunk only after hearing all of it: measured on espeak speech with hard
# onsets/cuts, the 0.5 crossing lands ~40 ms after the true onset and -70..+70 ms around the true
# offset when stamped at chunk centres. Stamping one chunk earlier centres that error on zero.
CAUSAL_LAG_SECONDS = CHUNK / SAMPLE_RATE
_INSTALL_HINT = "pip install --no-deps silero-vad"


def silero_model_path() -> Path:
    """``silero_vad/data/silero_vad.onnx`` of the installed wheel, found without importing it."""
    spec = importlib.util.find_spec("silero_vad")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = Path(location) / "data" / "silero_vad.onnx"
        if candidate.is_file():
            return candidate
    raise MissingDependencyError(f"the Silero VAD model is not installed; run `{_INSTALL_HINT}`")


@lru_cache(maxsize=1)
def _session():
    """One ONNX Runtime session per process; a single thread is plenty for a 32 ms LSTM step."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise MissingDependencyError("onnxruntime is not installed; run `pip install onnxruntime`") from exc
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(silero_model_path()), sess_options=options,
                                providers=["CPUExecutionProvider"])


def chunk_probabilities(audio: np.ndarray) -> np.ndarray:
    """Speech probability of each 32 ms chunk (the last chunk zero-padded), float32 ``(C,)``.

    Chunk ``c`` covers samples ``[512 c, 512 c + 512)``.
    """
    wav = as_mono_float(audio)
    n_chunks = max(1, -(-len(wav) // CHUNK))
    padded = np.zeros(CONTEXT + n_chunks * CHUNK, dtype=np.float32)
    padded[CONTEXT:CONTEXT + len(wav)] = wav
    session = _session()
    state = np.zeros(STATE_SHAPE, dtype=np.float32)
    sr = np.array(SAMPLE_RATE, dtype=np.int64)
    probs = np.empty(n_chunks, dtype=np.float32)
    for c in range(n_chunks):
        # The model expects the previous chunk's last 64 samples in front (zeros at the start).
        window = padded[c * CHUNK:c * CHUNK + CONTEXT + CHUNK][None, :]
        out, state = session.run(None, {"input": window, "state": state, "sr": sr})
        probs[c] = out[0, 0]
    return probs


def voice_activity(audio: np.ndarray, fps: float, n_frames: int | None = None) -> np.ndarray:
    """Probability of speech at each ``t_i = i / fps``: float32 ``(N,)`` in 0..1.

    The 32 ms chunk probabilities, stamped at their chunk's centre minus the model's causal lag,
    are linearly interpolated at the frame times.
    """
    wav = as_mono_float(audio)
    if n_frames is None:
        n_frames = n_frames_for(wav, fps)
    probs = chunk_probabilities(wav)
    stamps = (np.arange(len(probs)) * CHUNK + CHUNK / 2) / SAMPLE_RATE - CAUSAL_LAG_SECONDS
    vad = np.interp(frame_times(fps, n_frames), stamps, probs)
    return np.clip(vad, 0.0, 1.0).astype(np.float32)


def speech_mask(vad: np.ndarray, on: float = 0.5, off: float = 0.35,
                min_silence_frames: int = 3) -> np.ndarray:
    """Speaking (True) or not per frame, from :func:`voice_activity`, with hysteresis.

    Speech starts when the probability reaches ``on`` and ends only when it drops below ``off``,
    so a wavering probability does not flicker; pauses shorter than ``min_silence_frames``
    between two speech runs are filled, since a mouth does not close for a single frame.
    """
    if off > on:
        raise ValueError(f"off ({off}) must not exceed on ({on})")
    vad = np.asarray(vad, dtype=np.float32)
    mask = np.zeros(len(vad), dtype=bool)
    speaking = False
    for i, p in enumerate(vad):
        speaking = p >= on if not speaking else p >= off
        mask[i] = speaking
    if min_silence_frames > 0 and mask.any():
        speech = np.flatnonzero(mask)
        gaps = np.flatnonzero(np.diff(speech) > 1)
        for g in gaps:
            gap_start, gap_stop = speech[g] + 1, speech[g + 1]
            if gap_stop - gap_start < min_silence_frames:
                mask[gap_start:gap_stop] = True
    return mask
