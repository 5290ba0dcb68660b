"""Avatar preparation speed on every clip of ../shared/data, plus a 1280x720 version of one clip.

Usage: python benchmarks/prepare_speed.py [--data ../shared/data] [--out results/prepare_speed.json]
Prints one JSON object: per clip frames, seconds, frames/s, share of frames with a face.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lipdub.avatar import PrepareOptions, prepare
from lipdub.video import ffmpeg_exe, probe

ROOT = Path(__file__).resolve().parents[1]


def make_720p(src: Path, dst: Path) -> Path:
    """Scale a square clip into a 1280x720 frame (padded), H.264, as a user's 720p footage."""
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(src), "-vf",
                    "scale=-2:720,pad=1280:720:(ow-iw)/2:0", "-c:v", "libx264", "-crf", "18",
                    "-c:a", "copy", str(dst)], check=True)
    return dst


def run_one(clip: Path, work: Path) -> dict:
    info = probe(clip)
    t0 = time.perf_counter()
    avatar = prepare(clip, work / clip.stem, PrepareOptions(), overwrite=True)
    seconds = time.perf_counter() - t0
    found = avatar.face_found.mean() if hasattr(avatar, "face_found") else None
    return {"clip": clip.name, "size": f"{info.width}x{info.height}", "codec": info.video_codec,
            "native_fps": round(info.fps, 3), "frames": avatar.n_frames, "seconds": round(seconds, 2),
            "frames_per_s": round(avatar.n_frames / seconds, 1),
            "face_fraction": None if found is None else round(float(found), 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = ap.parse_args()
    clips = sorted(args.data.glob("*.mp4"))
    if not clips:
        print(json.dumps({"skipped": f"no clips in {args.data}"}))
        return 0
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        hd = make_720p(args.data / "mimictalk_German_20s.mp4", work / "mimictalk_German_20s_720p.mp4") \
            if (args.data / "mimictalk_German_20s.mp4").exists() else None
        for clip in ([hd] if hd else []) + clips:
            results.append(run_one(clip, work))
            print(json.dumps(results[-1]), file=sys.stderr)
    report = {"benchmark": "prepare_speed", "machine_cores": __import__("os").cpu_count(), "clips": results}
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
