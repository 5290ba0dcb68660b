"""Synthetic test media, built on the fly: no clip from ../shared is ever needed by the tests.

The face is scikit-image's public-domain astronaut photo; the "talking" clip opens and closes its
mouth by pushing the lower lip and chin down (a smooth remap) and painting a dark cavity between the
lips, so a face tracker sees a mouth that really opens. Speech comes from espeak-ng.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np
import skimage.data

# Landmarks of the astronaut photo (512x512), measured once with MediaPipe face mesh.
MOUTH_CENTER = (223.0, 146.0)
MOUTH_HALF_WIDTH = 21.0


def astronaut() -> np.ndarray:
    """The 512x512 RGB astronaut photo."""
    return skimage.data.astronaut().copy()


def open_mouth(img: np.ndarray, opening: float, shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """The astronaut with her mouth opened by ``opening`` pixels (0 = as photographed)."""
    h, w = img.shape[:2]
    cx, cy = MOUTH_CENTER
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    # Pixels below the mouth slide down by `opening`, fading out sideways and towards the neck.
    side = np.exp(-((xs - cx) ** 2) / (2 * (MOUTH_HALF_WIDTH * 1.3) ** 2))
    below = np.clip((ys - cy + 2) / 4.0, 0, 1) * np.exp(-np.clip(ys - cy - 30, 0, None) ** 2 / (2 * 25.0 ** 2))
    dy = opening * side * below
    out = cv2.remap(img, xs - shift[0], ys - dy - shift[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    if opening > 0.5:
        centre = (int(round(cx + shift[0])), int(round(cy + shift[1] + opening / 2)))
        axes = (int(MOUTH_HALF_WIDTH * 0.75), max(1, int(opening / 2)))
        cv2.ellipse(out, centre, axes, 0, 0, 360, (45, 15, 20), -1, cv2.LINE_AA)
    return out


def write_video(path: Path, frames, fps: float = 25.0, audio: Path | None = None,
                codec: str = "libx264", extra_output: list[str] | None = None) -> Path:
    """Encode RGB frames with the bundled ffmpeg (kept independent of lipdub.video on purpose)."""
    frames = list(frames)
    h, w = frames[0].shape[:2]
    args = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(fps), "-i", "-"]
    if audio is not None:
        args += ["-i", str(audio), "-c:a", "aac", "-shortest"]
    args += ["-c:v", codec, "-pix_fmt", "yuv420p"] + (extra_output or []) + [str(path)]
    proc = subprocess.run(args, input=b"".join(np.ascontiguousarray(f).tobytes() for f in frames),
                          capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.decode(errors="replace"))
    return path


def talking_frames(n: int, period: int = 10, max_open: float = 10.0, sway: float = 2.0):
    """n frames of the astronaut opening and closing her mouth every `period` frames."""
    base = astronaut()
    for i in range(n):
        phase = (i % period) / period
        opening = max_open * max(0.0, np.sin(2 * np.pi * phase))
        shift = (sway * np.sin(2 * np.pi * i / 50.0), 0.0)
        yield open_mouth(base, opening, shift)


def espeak(text: str, path: Path, speed: int = 160) -> Path:
    """Speak `text` to a WAV file with espeak-ng (22.05 kHz mono)."""
    exe = shutil.which("espeak-ng") or shutil.which("espeak")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
    subprocess.run([exe, "-s", str(speed), "-w", str(path), text], check=True, capture_output=True)
    return path
