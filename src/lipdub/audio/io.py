"""Decode any ffmpeg-readable audio (or a video's audio track) to 16 kHz mono float32.

The bundled ffmpeg (imageio-ffmpeg) does the decoding, downmixing and resampling and pipes raw
``f32le`` samples to us, so every container and codec ffmpeg knows works the same way and nothing
depends on system codecs. User mistakes become one-line ``InputError`` messages.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np

from lipdub.audio.timing import SAMPLE_RATE
from lipdub.errors import InputError

#: Inputs larger than this are refused before decoding (overridable with LIPDUB_MAX_INPUT_BYTES).
DEFAULT_MAX_INPUT_BYTES = 4 * 1024**3


def ffmpeg_exe() -> str:
    """The ffmpeg binary: lipdub.video's choice when that module is present, else imageio's."""
    try:
        from lipdub.video import ffmpeg_exe as video_ffmpeg_exe
    except ImportError:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    return video_ffmpeg_exe()


def max_input_bytes() -> int:
    raw = os.environ.get("LIPDUB_MAX_INPUT_BYTES", "")
    try:
        return int(raw) if raw.strip() else DEFAULT_MAX_INPUT_BYTES
    except ValueError:
        return DEFAULT_MAX_INPUT_BYTES


def check_input_file(path: Path) -> None:
    """Refuse missing, non-regular or oversized files before ffmpeg sees them."""
    if not path.exists():
        raise InputError(f"{path} does not exist")
    if not path.is_file():
        raise InputError(f"{path} is not a file")
    size = path.stat().st_size
    limit = max_input_bytes()
    if size > limit:
        raise InputError(f"{path} is too large ({size / 1024**3:.1f} GiB; the limit is "
                         f"{limit / 1024**3:.1f} GiB, set LIPDUB_MAX_INPUT_BYTES to change it)")
    if size == 0:
        raise InputError(f"{path} is empty")


def _decode_error(path: Path, stderr: str) -> InputError:
    """Turn ffmpeg's complaint into one line a user can act on."""
    text = stderr.lower()
    if "matches no streams" in text:
        return InputError(f"{path} has no audio stream")
    if "invalid data found" in text or "could not find codec" in text or "unknown format" in text:
        return InputError(f"{path} is not an audio or video file ffmpeg can read")
    if "permission denied" in text:
        return InputError(f"{path} cannot be read (permission denied)")
    last = next((line.strip() for line in reversed(stderr.splitlines()) if line.strip()), "unknown error")
    return InputError(f"{path} could not be decoded: {last}")


def load_audio(path: str | os.PathLike, sr: int = SAMPLE_RATE) -> np.ndarray:
    """The first audio stream of ``path`` as mono float32 in [-1, 1] at ``sr`` Hz.

    Works for audio files (wav, mp3, m4a, ogg, flac, ...) and for the audio track of a video.
    Sample 0 is the file's time 0 (a late-starting track is padded with silence); channels are
    averaged.
    Raises ``InputError`` for a missing, empty, oversized, unreadable or silent-track-less file.
    """
    path = Path(path)
    check_input_file(path)
    args = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error",
            "-i", str(path),
            # Only the first audio stream: videos with several tracks are decoded predictably.
            "-map", "0:a:0", "-vn", "-sn", "-dn",
            # first_pts=0: a track that starts late in its container (common in edited videos)
            # is padded with silence so sample 0 is the file's time 0, like video frame 0.
            # rematrix_maxval=1: ffmpeg's default downmix adds channels at -3 dB each (identical
            # stereo channels come out 1.41x louder and may clip); capping the gain averages them.
            "-af", "aresample=first_pts=0:rematrix_maxval=1.0",
            "-ac", "1", "-ar", str(sr), "-f", "f32le", "-acodec", "pcm_f32le", "pipe:1"]
    proc = subprocess.run(args, capture_output=True)
    if proc.returncode != 0:
        raise _decode_error(path, proc.stderr.decode(errors="replace"))
    # A truncated tail may leave a partial sample; drop it rather than fail.
    usable = len(proc.stdout) - len(proc.stdout) % 4
    audio = np.frombuffer(proc.stdout[:usable], dtype="<f4").astype(np.float32)
    if audio.size == 0:
        raise InputError(f"{path} has no audio samples (zero-length audio)")
    if not np.all(np.isfinite(audio)):
        raise InputError(f"{path} decodes to invalid (NaN or infinite) samples")
    # Resampling can overshoot slightly near full scale; the contract is [-1, 1].
    return np.clip(audio, -1.0, 1.0)
