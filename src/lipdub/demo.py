"""`lipdub demo`: scikit-image's astronaut photo says a sentence spoken by espeak-ng.

Needs no input: the photo is prepared as a photo avatar (a short idle template with blinks, head
motion and breathing) in a temporary folder, and the sentence is dubbed onto it with `generate`,
exactly as a user's own photo would be.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path


from lipdub.errors import MissingDependencyError
from lipdub.progress import ProgressFn

SENTENCE = "Hello! I am a photograph, and now I can talk. Everything runs on your own computer."
#: Idle template length: the ping-pong walk repeats it, so a few seconds are enough.
IDLE_SECONDS = 4.0


def espeak_exe() -> str:
    exe = shutil.which("espeak-ng") or shutil.which("espeak")
    if exe is None:
        raise MissingDependencyError("espeak-ng is not installed (apt-get install espeak-ng)")
    return exe


def speak(text: str, path: Path, speed: int = 150) -> Path:
    """Synthesise ``text`` to a WAV file with espeak-ng."""
    subprocess.run([espeak_exe(), "-s", str(speed), "-w", str(path), text], check=True,
                   capture_output=True)
    return path


def run_demo(out: str | Path = "demo.mp4", progress: ProgressFn | None = None,
             text: str = SENTENCE, idle_seconds: float = IDLE_SECONDS, fps: float = 25.0) -> dict:
    """Write ``out``: the astronaut saying ``text``. Returns a summary (path, frames, seconds, ...).

    The same path a user's photo takes: ``prepare`` (idle template) then ``generate``."""
    import cv2
    import skimage.data

    from lipdub.audio import load_audio, n_frames_for
    from lipdub.avatar import PrepareOptions, prepare
    from lipdub.photo.prepare import PhotoOptions
    from lipdub.pipeline import GenerateOptions, generate

    t0 = time.time()
    espeak_exe()  # fail before any work when it is missing
    with tempfile.TemporaryDirectory(prefix="lipdub-demo-") as tmp:
        photo = Path(tmp) / "astronaut.png"
        cv2.imwrite(str(photo), skimage.data.astronaut()[:, :, 2::-1])
        avatar = prepare(photo, Path(tmp) / "avatar", PrepareOptions(fps=fps, features=False),
                         progress, photo=PhotoOptions(seconds=idle_seconds))
        wav = speak(text, Path(tmp) / "speech.wav")
        generate(avatar, wav, out, GenerateOptions(crf=20), progress)
        frames = n_frames_for(load_audio(wav), fps)  # what generate promises for this audio
    return {"path": str(Path(out)), "frames": frames, "seconds": round(time.time() - t0, 2),
            "idle_frames": avatar.n_frames}
