"""Decode any ffmpeg-readable audio (or a video's audio track) to 16 kHz mono float32.

The bundled ffmpeg (imageio-ffmpeg) does the decoding, downmixing and resampling and pipes raw
``f32le`` samples to us, so every container and codec ffmpeg knows works the same way and nothing
depends on system codecs. User mistakes become one-line ``InputError`` messages.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
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


def wav_shortfall(path: Path) -> tuple[float, float] | None:
    """(seconds the header promises, seconds the file holds) of a WAV whose data ends before its
    header says (a cut download or copy), or None: not a RIFF/WAVE file, or a complete one.

    Streaming writers leave the size at 0 or 0xFFFFFFFF ("unknown"): those are not truncated.
    """
    import struct

    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            byte_rate = 0
            while True:
                chunk = f.read(8)
                if len(chunk) < 8:
                    return None
                cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                start = f.tell()
                if cid == b"fmt " and size >= 16:
                    byte_rate = struct.unpack("<8xI", f.read(12))[0]
                elif cid == b"data":
                    have = os.fstat(f.fileno()).st_size - start
                    if size in (0, 0xFFFFFFFF) or have >= size or byte_rate <= 0:
                        return None
                    return size / byte_rate, have / byte_rate
                f.seek(start + size + (size & 1))
    except OSError:
        return None


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
    A WAV cut short (data ends before its header says) is decoded as far as it goes, with a
    warning on stderr.
    """
    path = Path(path)
    check_input_file(path)
    short = wav_shortfall(path)
    if short is not None:
        # Decoded as far as it goes: what is there is real speech, and the output will last
        # exactly as long as it (the writer checks that); the user is told it is cut.
        print(f"lipdub: warning: {path} is truncated: its header promises {short[0]:.2f} s of "
              f"audio but the file holds {short[1]:.2f} s; using those {short[1]:.2f} s",
              file=sys.stderr)
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
    pcm = bytearray()
    with tempfile.TemporaryFile() as stderr:  # a file: nobody has to drain it to avoid a deadlock
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr)
        try:
            # Into one growing buffer, viewed as samples without a copy: an hour of audio costs
            # its 230 MB once, not three times (bytes, array, clipped array).
            while block := proc.stdout.read(1 << 20):
                pcm += block
        finally:
            proc.stdout.close()
            returncode = proc.wait()
        if returncode != 0:
            stderr.seek(0)
            raise _decode_error(path, stderr.read().decode(errors="replace"))
    # A truncated tail may leave a partial sample; drop it rather than fail.
    del pcm[len(pcm) - len(pcm) % 4:]
    audio = np.frombuffer(pcm, dtype="<f4")
    if audio.size == 0:
        raise InputError(f"{path} has no audio samples (zero-length audio)")
    if not np.isfinite(audio).all():
        raise InputError(f"{path} decodes to invalid (NaN or infinite) samples")
    # Resampling can overshoot slightly near full scale; the contract is [-1, 1].
    return np.clip(audio, -1.0, 1.0, out=audio)
