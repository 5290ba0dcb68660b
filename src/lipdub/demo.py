"""`lipdub demo`: scikit-image's astronaut photo says a sentence.

Needs no input and no system packages: the sentence ships with lipdub as a small audio file
(``assets/demo_sentence.opus``, made once with espeak-ng by ``tools/make_demo_speech.py``, which
records the exact commands and the file's sha256). Other text is spoken by espeak-ng, which must
then be installed. The photo is prepared as a photo avatar (a short idle template with blinks, head
motion and breathing) in a temporary folder, and the speech is dubbed onto it with `generate`,
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
#: espeak-ng words per minute, for the shipped sentence and custom text alike.
SPEECH_RATE = 150
#: The shipped recording of ``SENTENCE`` (16 kHz mono Opus).
DEMO_SPEECH = Path(__file__).resolve().parent / "assets" / "demo_sentence.opus"
#: Idle template length: the ping-pong walk repeats it, so a few seconds are enough.
IDLE_SECONDS = 4.0


def espeak_exe() -> str:
    exe = shutil.which("espeak-ng") or shutil.which("espeak")
    if exe is None:
        raise MissingDependencyError("speaking custom text needs espeak-ng, which is not installed "
                                     "(apt-get install espeak-ng; the built-in sentence needs nothing)")
    return exe


def speak(text: str, path: Path, speed: int = SPEECH_RATE) -> Path:
    """Synthesise ``text`` to a WAV file with espeak-ng."""
    subprocess.run([espeak_exe(), "-v", "en-us", "-s", str(speed), "-w", str(path), text],
                   check=True, capture_output=True)
    return path


def demo_speech(text: str | None, folder: Path) -> Path:
    """The audio of ``text``: the shipped file for the built-in sentence, else espeak-ng's."""
    if text is None or text == SENTENCE:
        if not DEMO_SPEECH.exists():
            raise MissingDependencyError(f"the demo sentence {DEMO_SPEECH} is missing; reinstall lipdub")
        return DEMO_SPEECH
    return speak(text, folder / "speech.wav")


def run_demo(out: str | Path = "demo.mp4", progress: ProgressFn | None = None,
             text: str | None = None, idle_seconds: float = IDLE_SECONDS, fps: float = 25.0) -> dict:
    """Write ``out``: the astronaut saying ``text`` (default: the shipped sentence, no espeak-ng).
    Returns a summary (path, frames, seconds, ...).

    The same path a user's photo takes: ``prepare`` (idle template) then ``generate``."""
    import cv2
    import skimage.data

    from lipdub.audio import load_audio, n_frames_for
    from lipdub.avatar import PrepareOptions, prepare
    from lipdub.photo.prepare import PhotoOptions
    from lipdub.pipeline import GenerateOptions, generate

    t0 = time.time()
    if text is not None and text != SENTENCE:
        espeak_exe()  # fail before any work when it is missing
    with tempfile.TemporaryDirectory(prefix="lipdub-demo-") as tmp:
        speech = demo_speech(text, Path(tmp))
        photo = Path(tmp) / "astronaut.png"
        cv2.imwrite(str(photo), skimage.data.astronaut()[:, :, 2::-1])
        avatar = prepare(photo, Path(tmp) / "avatar", PrepareOptions(fps=fps, features=False),
                         progress, photo=PhotoOptions(seconds=idle_seconds))
        generate(avatar, speech, out, GenerateOptions(crf=20), progress)
        frames = n_frames_for(load_audio(speech), fps)  # what generate promises for this audio
    return {"path": str(Path(out)), "frames": frames, "seconds": round(time.time() - t0, 2),
            "idle_frames": avatar.n_frames, "speech": str(speech) if speech == DEMO_SPEECH else "espeak-ng"}
