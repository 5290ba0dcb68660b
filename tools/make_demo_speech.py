"""Make the demo's sentence once: espeak-ng -> 16 kHz mono Opus in ``src/lipdub/assets``.

    python tools/make_demo_speech.py          # rewrites the file and its .json record
    python tools/make_demo_speech.py --check  # exit 1 if a fresh synthesis differs (same espeak-ng)

``lipdub demo`` plays the shipped file, so it runs without espeak-ng; espeak-ng is only needed for
custom text (``lipdub demo --text ...``). The record keeps the exact commands, the espeak-ng
version and the file's sha256. The PCM from espeak-ng is deterministic for a given version and
the Opus encode of the bundled ffmpeg is too, so the same versions give the same bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from lipdub.demo import DEMO_SPEECH, SENTENCE, SPEECH_RATE, espeak_exe  # noqa: E402

ENCODE = ["-ac", "1", "-ar", "16000", "-c:a", "libopus", "-b:a", "32k", "-application", "voip",
          "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:a", "+bitexact"]


def synthesise(out: Path) -> dict:
    from lipdub.video import ffmpeg_exe

    exe = espeak_exe()
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        espeak = [exe, "-v", "en-us", "-s", str(SPEECH_RATE), "-w", str(wav), SENTENCE]
        subprocess.run(espeak, check=True, capture_output=True)
        subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", "-i", str(wav), *ENCODE,
                        str(out)], check=True)
    version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.strip()
    return {"sentence": SENTENCE, "espeak_command": ["espeak-ng"] + espeak[1:-3] + ["-w", "speech.wav", SENTENCE],
            "ffmpeg_command": ["ffmpeg", "-i", "speech.wav", *ENCODE, out.name],
            "espeak_version": version, "sha256": hashlib.sha256(out.read_bytes()).hexdigest(), "bytes": out.stat().st_size}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    record_path = DEMO_SPEECH.with_suffix(".json")
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            fresh = synthesise(Path(tmp) / DEMO_SPEECH.name)
        shipped = json.loads(record_path.read_text())
        same = fresh["sha256"] == shipped["sha256"]
        print(f"shipped {shipped['sha256']} ({shipped['espeak_version']})\nfresh   {fresh['sha256']}"
              f" ({fresh['espeak_version']})\n{'identical' if same else 'DIFFERENT'}")
        return 0 if same else 1
    record = synthesise(DEMO_SPEECH)
    record_path.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {DEMO_SPEECH} ({record['bytes']} bytes, sha256 {record['sha256']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
