"""A corpus of bad and odd inputs, made on the fly (used by the bad-input tests and by
benchmarks/reliability.py). Each case says what a user should get: "ok" (a valid output) or
"error" (one clear line, non-zero exit, no output file).

Audio cases go to `generate --audio` (and the API's audio upload), visual cases to `prepare`
(and the API's video upload), avatar cases to `generate --avatar`, output cases to `-o`.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import imageio_ffmpeg
import numpy as np

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


@dataclass(frozen=True)
class Case:
    name: str
    path: Path
    expect: str  # "ok" or "error"
    note: str = ""


def wav_bytes(samples: np.ndarray, rate: int = 16000, channels: int = 1, *, data_size: int | None = None,
              header_rate: int | None = None, header_channels: int | None = None,
              bits: int = 16) -> bytes:
    """A PCM WAV; the keyword arguments let its header lie about the data."""
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
    ch = channels if header_channels is None else header_channels
    sr = rate if header_rate is None else header_rate
    size = len(pcm) if data_size is None else data_size
    fmt = struct.pack("<HHIIHH", 1, ch, sr, sr * ch * bits // 8, ch * bits // 8, bits)
    return (b"RIFF" + struct.pack("<I", 36 + size) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
            + b"data" + struct.pack("<I", size) + pcm)


def tone(seconds: float, rate: int = 16000, channels: int = 1) -> np.ndarray:
    """A speech-band warble (not silence, so voice activity and the mouth have something)."""
    t = np.arange(int(seconds * rate)) / rate
    x = 0.3 * np.sin(2 * np.pi * 220 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    return np.repeat(x[:, None], channels, axis=1).reshape(-1) if channels > 1 else x


def _ffmpeg(*args: str) -> None:
    subprocess.run([FFMPEG, "-y", "-loglevel", "error", *args], check=True, capture_output=True)


def audio_cases(root: Path, speech_wav: Path, talking_clip: Path, silent_clip: Path,
                face_png: Path) -> list[Case]:
    """Bad and odd audio files for `generate --audio` / the API's audio upload."""
    root.mkdir(parents=True, exist_ok=True)
    cases: list[Case] = []

    def put(name: str, data: bytes, expect: str, note: str = "") -> None:
        path = root / name
        path.write_bytes(data)
        cases.append(Case(name, path, expect, note))

    one = tone(1.0)
    put("empty.wav", b"", "error", "0 bytes")
    put("10ms.wav", wav_bytes(tone(0.01)), "error", "shorter than one frame")
    put("truncated.wav", wav_bytes(one)[: 44 + 2 * 8000], "ok", "header says 1 s, holds 0.5 s")
    put("truncated_to_20ms.wav", wav_bytes(one)[: 44 + 2 * 320], "error", "what is left is under a frame")
    put("header_only.wav", wav_bytes(one)[:44], "error", "a header and no samples")
    put("lying_size_huge.wav", wav_bytes(one, data_size=0x7FFFFFF0), "ok", "data size claims 2 GB")
    put("lying_size_zero.wav", wav_bytes(one, data_size=0), "ok", "data size 0 (streaming writer)")
    put("lying_rate_zero.wav", wav_bytes(one, header_rate=0), "error", "sample rate 0")
    put("lying_channels_zero.wav", wav_bytes(one, header_channels=0), "error", "0 channels")
    put("lying_rate_1mhz.wav", wav_bytes(tone(1.0, 16000), header_rate=1_000_000), "error",
        "claims 1 MHz: 16 ms of sound")
    put("lying_rate_4khz.wav", wav_bytes(tone(0.5), header_rate=4000), "ok", "plays 4x slower")
    put("8khz.wav", wav_bytes(tone(1.0, 8000), rate=8000), "ok")
    put("96khz.wav", wav_bytes(tone(1.0, 96000), rate=96000), "ok")
    put("6ch.wav", wav_bytes(tone(1.0, 16000, 6), channels=6), "ok", "5.1")
    put("random_bytes.wav", np.random.default_rng(0).integers(0, 256, 4000, np.uint8).tobytes(), "error")
    put("text.wav", b"this is a text file, not a sound\n" * 40, "error", "text named .wav")
    put("nan_float.wav", _float_wav(np.full(16000, np.nan, np.float32)), "error", "NaN samples")
    mp3 = root / "speech_named.wav"
    _ffmpeg("-i", str(speech_wav), "-c:a", "libmp3lame", "-f", "mp3", str(mp3))
    cases.append(Case(mp3.name, mp3, "ok", "an MP3 named .wav"))
    cases.append(Case("video_as_audio.mp4", talking_clip, "ok", "a video's sound track"))
    cases.append(Case("video_without_sound.mp4", silent_clip, "error", "no audio stream"))
    cases.append(Case("photo_as_audio.png", face_png, "error", "a picture"))
    folder = root / "a folder.wav"
    folder.mkdir(exist_ok=True)
    cases.append(Case(folder.name, folder, "error", "a directory"))
    link = root / "link.wav"
    link.unlink(missing_ok=True)
    link.symlink_to(speech_wav)
    cases.append(Case(link.name, link, "ok", "a symlink"))
    dangling = root / "dangling.wav"
    dangling.unlink(missing_ok=True)
    dangling.symlink_to(root / "nowhere.wav")
    cases.append(Case(dangling.name, dangling, "error", "a symlink to nothing"))
    odd = root / "réunion été – ünïcödé 音声 with spaces.wav"
    shutil.copy(speech_wav, odd)
    cases.append(Case("non-ascii name", odd, "ok", "non-ASCII and spaces"))
    cases.append(Case("missing.wav", root / "missing.wav", "error", "no such file"))
    return cases


def _float_wav(samples: np.ndarray, rate: int = 16000) -> bytes:
    data = samples.astype("<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, rate, rate * 4, 4, 32)
    return (b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE" + b"fmt " + struct.pack("<I", 16)
            + fmt + b"data" + struct.pack("<I", len(data)) + data)


def visual_cases(root: Path, talking_clip: Path, face_png: Path, speech_wav: Path,
                 no_face_clip: Path) -> list[Case]:
    """Bad and odd footage for `prepare` / the API's video upload."""
    root.mkdir(parents=True, exist_ok=True)
    cases: list[Case] = []
    big = root / "4k.mp4"  # the clip scaled to 3840x2160 (letterboxed): 10 frames
    _ffmpeg("-i", str(talking_clip), "-frames:v", "10", "-vf",
            "scale=2160:2160,pad=3840:2160:840:0", "-c:v", "libx264", "-preset", "ultrafast",
            "-pix_fmt", "yuv420p", str(big))
    cases.append(Case(big.name, big, "ok", "3840x2160"))
    wide = root / "wide.mp4"  # 512x400 stored, shown as 400x512 by its rotation metadata
    _ffmpeg("-i", str(talking_clip), "-vf", "crop=512:400:0:0", "-c:v", "libx264", "-preset",
            "ultrafast", "-pix_fmt", "yuv420p", "-an", str(wide))
    rotated = root / "rotated.mp4"
    _ffmpeg("-display_rotation", "90", "-i", str(wide), "-c", "copy", str(rotated))
    cases.append(Case(rotated.name, rotated, "ok", "rotation metadata (90 degrees)"))
    truncated = root / "truncated.mp4"
    truncated.write_bytes(talking_clip.read_bytes()[: talking_clip.stat().st_size // 3])
    cases.append(Case(truncated.name, truncated, "error", "cut to a third"))
    empty = root / "empty.mp4"
    empty.write_bytes(b"")
    cases.append(Case(empty.name, empty, "error", "0 bytes"))
    text = root / "notes.mp4"
    text.write_text("not a video\n" * 50)
    cases.append(Case(text.name, text, "error", "text named .mp4"))
    cases.append(Case("audio_as_video.wav", speech_wav, "error", "no picture"))
    cases.append(Case("no_face.mp4", no_face_clip, "error", "no face"))
    folder = root / "a folder.mp4"
    folder.mkdir(exist_ok=True)
    cases.append(Case(folder.name, folder, "error", "a directory"))
    odd = root / "photo d'été ünï 写真.png"
    shutil.copy(face_png, odd)
    cases.append(Case("non-ascii photo", odd, "ok", "non-ASCII and spaces"))
    return cases


def avatar_cases(root: Path, avatar_dir: Path) -> list[Case]:
    """Copies of a good avatar folder, each damaged one way."""
    root.mkdir(parents=True, exist_ok=True)
    cases: list[Case] = []

    def damaged(name: str, how, note: str = "") -> None:
        folder = root / name
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(avatar_dir, folder)
        how(folder)
        cases.append(Case(name, folder, "error", note))

    def cut(path: Path, keep: int = 100) -> None:
        path.write_bytes(path.read_bytes()[:keep])

    def manifest(folder: Path, **changes) -> None:
        m = json.loads((folder / "manifest.json").read_text())
        m.update(changes)
        (folder / "manifest.json").write_text(json.dumps(m))

    damaged("missing_landmarks", lambda f: (f / "landmarks_smooth.npy").unlink(), "a file missing")
    damaged("truncated_npy", lambda f: cut(f / "boxes.npy"), "a truncated .npy")
    damaged("truncated_npz", lambda f: cut(next(f.glob("*.npz")), 300), "a truncated .npz")
    damaged("truncated_onnx", lambda f: cut(f / "renderer.onnx", 300), "a truncated model")
    damaged("newer_manifest", lambda f: manifest(f, format_version=99), "from a newer lipdub")
    damaged("garbage_manifest", lambda f: (f / "manifest.json").write_bytes(b"\x00garbage"))
    damaged("bad_manifest_value", lambda f: manifest(f, n_frames="many"))
    damaged("missing_frames", lambda f: [p.unlink() for p in sorted((f / "frames").iterdir())[:5]],
            "frame JPEGs missing")
    empty = root / "empty_folder"
    empty.mkdir(exist_ok=True)
    cases.append(Case(empty.name, empty, "error", "not an avatar"))
    return cases
