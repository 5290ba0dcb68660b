"""All per-frame audio features of a clip in one object, computed together and saved as .npz."""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lipdub.audio.io import load_audio
from lipdub.audio.mel import MEL_STEPS, N_MELS, mel_windows
from lipdub.audio.timing import SAMPLE_RATE, as_mono_float, n_frames_for
from lipdub.audio.vad import voice_activity
from lipdub.audio.whisper import FEATURE_DIM, WhisperEncoder
from lipdub.errors import InputError, OutputError
from lipdub.progress import ProgressFn

_ARRAYS = ("mel", "whisper", "vad")
#: Bump whenever a feature's definition changes (timing, scaling, model), so files and caches
#: made by an older front end are recomputed instead of silently mixed with new ones.
# 3: states of four encoder layers side by side (2: the last layer of 6 s unpadded windows;
# 1: 30 s zero-padded windows)
FEATURES_VERSION = 3


def front_end(encoder: WhisperEncoder | None = None) -> dict:
    """The audio front end as a motion model's manifest records it: features made here can only
    be read by a model trained on the same (``encoder``'s Whisper windows, default the library's)."""
    from lipdub.audio import whisper

    return {"features_version": FEATURES_VERSION,
            "whisper_window_seconds": encoder.window_seconds if encoder else whisper.WINDOW_SECONDS,
            "whisper_hop_seconds": encoder.hop_seconds if encoder else whisper.HOP_SECONDS,
            "whisper_layers": list(whisper.LAYERS)}


# eq=False: field-wise == on arrays is ambiguous; compare the arrays themselves when needed.
@dataclass(frozen=True, eq=False)
class AudioFeatures:
    """Features of frame ``i`` are centred on ``t_i = i / fps``; any of them may be absent (None).

    ``mel``: (N, 80, 16) Wav2Lip mel windows; ``whisper``: (N, FEATURE_DIM) encoder states;
    ``vad``: (N,) speech probability; ``duration``: seconds of audio they came from.
    """

    fps: float
    n_frames: int
    duration: float
    mel: np.ndarray | None = None
    whisper: np.ndarray | None = None
    vad: np.ndarray | None = None

    def __post_init__(self):
        expected = {"mel": (self.n_frames, N_MELS, MEL_STEPS),
                    "whisper": (self.n_frames, FEATURE_DIM), "vad": (self.n_frames,)}
        for name in _ARRAYS:
            value = getattr(self, name)
            if value is not None and value.shape != expected[name]:
                raise ValueError(f"{name} has shape {value.shape}, expected {expected[name]}")

    def save(self, path: str | os.PathLike) -> Path:
        """Write an uncompressed .npz (float features barely compress; loading stays fast)."""
        path = Path(path)
        arrays = {name: getattr(self, name) for name in _ARRAYS if getattr(self, name) is not None}
        partial = path.with_name(path.name + ".partial")
        try:
            with open(partial, "wb") as handle:
                np.savez(handle, version=np.int64(FEATURES_VERSION), fps=np.float64(self.fps),
                         n_frames=np.int64(self.n_frames), duration=np.float64(self.duration),
                         **arrays)
            os.replace(partial, path)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "AudioFeatures":
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path} does not exist")
        try:
            with np.load(path, allow_pickle=False) as data:
                version = int(data["version"]) if "version" in data.files else 0
                if version != FEATURES_VERSION:
                    raise InputError(f"{path} holds audio features of format {version}, this "
                                     f"lipdub makes {FEATURES_VERSION}: extract them again")
                fields = {name: data[name] for name in _ARRAYS if name in data.files}
                return cls(fps=float(data["fps"]), n_frames=int(data["n_frames"]),
                           duration=float(data["duration"]), **fields)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            raise InputError(f"{path} is not a lipdub audio-features file") from exc


def extract_features(audio_or_path: np.ndarray | str | os.PathLike, fps: float = 25.0,
                     n_frames: int | None = None, mel: bool = True, whisper: bool = True,
                     vad: bool = True, progress: ProgressFn | None = None,
                     encoder: WhisperEncoder | None = None) -> AudioFeatures:
    """Per-frame features of an audio file or a 16 kHz mono array.

    ``n_frames`` defaults to ``round(duration * fps)``; pass the video's frame count to match it
    (frames past the audio's end get the features of silence or of the last instant).
    ``encoder`` replaces the default :class:`WhisperEncoder` (another model, precision or
    thread count); ``progress`` receives ``("whisper", fraction)`` as windows finish.
    """
    if isinstance(audio_or_path, (str, os.PathLike)):
        wav = load_audio(audio_or_path)
    else:
        wav = as_mono_float(audio_or_path)
    if n_frames is None:
        n_frames = n_frames_for(wav, fps)
    whisper_features = None
    if whisper:
        encoder = encoder or WhisperEncoder()
        whisper_features = encoder.frame_features(wav, fps, n_frames, progress=progress)
    return AudioFeatures(
        fps=float(fps), n_frames=int(n_frames), duration=len(wav) / SAMPLE_RATE,
        mel=mel_windows(wav, fps, n_frames) if mel else None,
        whisper=whisper_features,
        vad=voice_activity(wav, fps, n_frames) if vad else None,
    )
