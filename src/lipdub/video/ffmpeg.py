"""The ffmpeg binary lipdub drives: where it is, how to give it a frame rate, what it said."""

from __future__ import annotations

import re
import shutil
from fractions import Fraction
from typing import IO


from lipdub.errors import MissingDependencyError


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary: imageio-ffmpeg's bundled one, else one on PATH."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        pass
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise MissingDependencyError("ffmpeg not found: pip install imageio-ffmpeg, or install ffmpeg")
    return exe


def ffmpeg_says(stderr: IO[bytes]) -> str:
    """ffmpeg's complaint in one line: its first error (the cause) and its last (the outcome)."""
    stderr.flush()
    stderr.seek(0)
    # Drop the "[dec:h264 @ 0x55...]" prefixes: addresses mean nothing to a user.
    lines = [re.sub(r"^(\[[^\]]*\]\s*)+", "", line.strip())[:200]
             for line in stderr.read().decode(errors="replace").splitlines() if line.strip()]
    if not lines:
        return ""
    return lines[0] if lines[0] == lines[-1] else f"{lines[0]} ... {lines[-1]}"


def rate_fraction(fps: float) -> str:
    """fps as ffmpeg wants it: 29.97 becomes 30000/1001, not a float that drifts over an hour."""
    rate = Fraction(fps).limit_denominator(1001)
    return f"{rate.numerator}/{rate.denominator}"
