"""Generation speed and memory for a 1280x720 template (JSON on stdout).

Builds (once, under cache/bench/generate_speed) a 1280x720 template from a development clip,
prepares it and trains a renderer for a few steps (speed does not depend on training). Then, each
in a fresh subprocess so peak memory is its own:
- ``generate`` of 30 s of speech: wall time, frames/s, peak RSS;
- an encode-only pass over the same template frames in the same walk (decode + H.264 encode,
  nothing else): the ceiling set by video I/O;
- ``generate`` of ``--long`` seconds (default 600 = 10 min) of speech: peak RSS, to show memory does
  not grow with the output length.

    python benchmarks/generate_speed.py [--long 600] [--shapes audio|template]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
WORK = ROOT / "cache" / "bench" / "generate_speed"
SOURCE = "mimictalk_German_20s.mp4"
SPEECH = "musetalk_eng.wav"


def build_template() -> Path:
    import cv2

    from lipdub.avatar import Avatar, PrepareOptions, prepare
    from lipdub.render.train import TrainOptions, train_renderer
    from lipdub.video import EncodeOptions, read_frames, write_video

    WORK.mkdir(parents=True, exist_ok=True)
    clip, folder = WORK / "template720.mp4", WORK / "avatar720"
    if not clip.exists():
        frames = []
        for i, f in enumerate(read_frames(DATA / SOURCE)):
            if i >= 250:
                break
            f = cv2.resize(f, (720, 720), interpolation=cv2.INTER_CUBIC)
            frames.append(cv2.copyMakeBorder(f, 0, 0, 280, 280, cv2.BORDER_REFLECT))
        write_video(frames, clip, options=EncodeOptions(fps=25.0, crf=12, preset="veryfast"))
    if not (folder / "renderer.onnx").exists():
        avatar = prepare(clip, folder, PrepareOptions(fps=25.0), overwrite=True)
        train_renderer(avatar, TrainOptions(steps=20))
    Avatar.load(folder)
    return folder


def build_audio(seconds: float) -> Path:
    from lipdub.video import ffmpeg_exe

    path = WORK / f"speech_{int(seconds)}s.wav"
    if not path.exists():
        subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-stream_loop", "-1", "-i",
                        str(DATA / SPEECH), "-t", str(seconds), "-ac", "1", "-ar", "16000", str(path)],
                       check=True)
    return path


def run_generate(folder: str, audio: str, shapes: str) -> dict:
    from lipdub.pipeline import GenerateOptions, generate
    from lipdub.video import probe

    t0 = time.perf_counter()
    out = generate(folder, audio, WORK / f"out_{Path(audio).stem}.mp4", GenerateOptions(shapes=shapes))
    wall = time.perf_counter() - t0
    info = probe(out)
    n = int(round(info.duration * 25))
    return {"frames": n, "seconds": round(wall, 1), "fps": round(n / wall, 1)}


def run_encode_only(folder: str, audio: str) -> dict:
    from lipdub.audio import load_audio, n_frames_for
    from lipdub.avatar import Avatar
    from lipdub.pipeline import template_frames, template_order
    from lipdub.video import EncodeOptions, VideoWriter

    avatar = Avatar.load(folder)
    t0 = time.perf_counter()
    n = n_frames_for(load_audio(audio), avatar.fps)
    order = template_order(n, avatar.n_frames)
    with VideoWriter(WORK / "encode_only.mp4", avatar.width, avatar.height,
                     EncodeOptions(fps=avatar.fps), audio=audio) as writer:
        for frame in template_frames(avatar, order):
            writer.write(frame)
    wall = time.perf_counter() - t0
    return {"frames": n, "seconds": round(wall, 1), "fps": round(n / wall, 1)}


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM). Not ru_maxrss: Linux carries that across
    fork + exec, so every child would report the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def child(args) -> int:
    fn = run_generate if args.child == "generate" else run_encode_only
    extra = (args.shapes,) if args.child == "generate" else ()
    result = fn(args.folder, args.audio, *extra)
    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result))
    return 0


def in_subprocess(kind: str, folder: Path, audio: Path, shapes: str) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--folder", str(folder), "--audio", str(audio),
           "--shapes", shapes]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**__import__("os").environ,
                                                                   "LIPDUB_PROGRESS": "0"})
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--long", type=float, default=600.0, help="seconds of audio for the memory run")
    ap.add_argument("--shapes", default=None, choices=["audio", "template"],
                    help="mouth source (default: the motion model if installed)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--folder", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--audio", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args)
    if not (DATA / SOURCE).exists():
        print(json.dumps({"skipped": f"{DATA / SOURCE} not present"}))
        return 0
    shapes = args.shapes
    if shapes is None:
        from lipdub.motion.model import ONNX_PATH
        shapes = "audio" if ONNX_PATH.exists() else "template"
    folder = build_template()
    short, long_ = build_audio(30), build_audio(args.long)
    report = {"template": "1280x720", "shapes": shapes, "cpu_count": __import__("os").cpu_count(),
              "load_average_before": list(np.round(__import__("os").getloadavg(), 2))}
    report["generate_30s"] = in_subprocess("generate", folder, short, shapes)
    report["encode_only_30s"] = in_subprocess("encode", folder, short, shapes)
    if args.long > 0:
        report[f"generate_{int(args.long)}s"] = in_subprocess("generate", folder, long_, shapes)
        a = report["generate_30s"].get("peak_rss_mb")
        b = report[f"generate_{int(args.long)}s"].get("peak_rss_mb")
        if a and b:
            report["rss_growth"] = round(b / a - 1, 3)
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
