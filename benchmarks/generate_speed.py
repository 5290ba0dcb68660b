"""Generation speed, start-up and memory against the encode-only ceiling (JSON on stdout).

Templates (built once under cache/bench/generate_speed from ../shared clips; frames never leave
the cache):

- ``720p``: mimictalk_German_20s scaled to 720x720 and padded to 1280x720 (face ~360 px tall);
- ``closeup720``: the same clip cropped to the face and scaled so the face fills the 720 px height
  (a close-up; the mouth box reaches the renderer's largest working side), padded to 1280x720;
- ``portrait``: latentsync_demo1_video, 1080x1920 as it is.

Each is prepared and given a renderer trained for a few steps (speed does not depend on
training). Then, each in a fresh subprocess so peak memory and start-up are its own:

- ``generate`` of 30 s of speech: wall time, frames/s, time from the command to the first frame
  handed to the encoder, peak RSS;
- an encode-only pass over the same template frames in the same walk (JPEG decode + H.264 encode
  with the audio, nothing else), right after it: the ceiling set by video I/O. ``ratio`` is
  generate's frames/s over this one's;
- with ``--long S``: ``generate`` of S seconds on the first template, peak RSS vs the 30 s run.

``--pin`` runs every subprocess under ``taskset -c 0`` (one core: the margin a slower or busier
machine needs). ``--network on|off|both``: the per-avatar U-Net or the network-free path.

Each pass also reports its CPU seconds: ``python_cpu_s`` (decode, render, features, imports) and
``ffmpeg_cpu_s`` (the encoder). ``--src DIR`` runs the passes against another ``src`` folder (an
older commit exported with ``git archive``): a before/after under the same load.

``--record KEY`` also writes the report to ``benchmarks/results/generate_speed.json`` as
``latest.KEY`` (the figure it replaces is kept under ``before``).

    python benchmarks/generate_speed.py [--templates 720p,closeup720,portrait] [--long 600] [--pin] [--repeat 3] [--src DIR] [--record KEY]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
WORK = ROOT / "cache" / "bench" / "generate_speed"
SPEECH = SHARED / "data" / "musetalk_eng.wav"
TEMPLATES = {
    "720p": SHARED / "data" / "mimictalk_German_20s.mp4",
    "closeup720": SHARED / "data" / "mimictalk_German_20s.mp4",
    "portrait": SHARED / "data" / "latentsync_demo1_video.mp4",
}


def _face_square(frame: np.ndarray, fill: float) -> tuple[int, int, int]:
    """(x0, y0, side) of a square around the face in ``frame`` whose side is the face mesh's
    height / ``fill``, kept inside the frame."""
    from lipdub.face.mesh import FaceTracker

    with FaceTracker(mode="image") as tracker:
        lm = tracker.track(frame)
    if lm is None:
        raise SystemExit("no face in the close-up source")
    h, w = frame.shape[:2]
    side = int(min(h, w, (lm[:, 1].max() - lm[:, 1].min()) / fill))
    cx, cy = lm[:, :2].mean(0)
    x0 = int(np.clip(cx - side / 2, 0, w - side))
    y0 = int(np.clip(cy - side / 2, 0, h - side))
    return x0, y0, side


def _template_clip(name: str) -> Path:
    import cv2

    from lipdub.video import EncodeOptions, read_frames, write_video

    source, clip = TEMPLATES[name], WORK / f"{name}.mp4"
    if clip.exists():
        return clip
    if name == "portrait":
        shutil.copyfile(source, clip)
        return clip
    square = None
    frames = []
    for i, f in enumerate(read_frames(source)):
        if i >= 250:
            break
        if name == "closeup720":
            square = square or _face_square(f, fill=0.95)
            x0, y0, side = square
            f = f[y0:y0 + side, x0:x0 + side]
        f = cv2.resize(f, (720, 720), interpolation=cv2.INTER_CUBIC)
        frames.append(cv2.copyMakeBorder(f, 0, 0, 280, 280, cv2.BORDER_REFLECT))
    write_video(frames, clip, options=EncodeOptions(fps=25.0, crf=12, preset="veryfast"))
    return clip


def build_template(name: str) -> Path:
    from lipdub.avatar import Avatar, PrepareOptions, prepare
    from lipdub.render.train import TrainOptions, train_renderer

    WORK.mkdir(parents=True, exist_ok=True)
    folder = WORK / f"avatar_{name}"
    if not (folder / "renderer.onnx").exists():
        avatar = prepare(_template_clip(name), folder, PrepareOptions(fps=25.0), overwrite=True)
        train_renderer(avatar, TrainOptions(steps=20))
    Avatar.load(folder)
    return folder


def build_audio(seconds: float) -> Path:
    from lipdub.video import ffmpeg_exe

    path = WORK / f"speech_{int(seconds)}s.wav"
    if not path.exists():
        WORK.mkdir(parents=True, exist_ok=True)
        subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-stream_loop", "-1", "-i",
                        str(SPEECH), "-t", str(seconds), "-ac", "1", "-ar", "16000", str(path)],
                       check=True)
    return path


def _watch_first_write(started: float) -> dict:
    """Record when the first frame reaches the encoder (seconds since the parent's ``started``)."""
    from lipdub.video import VideoWriter

    seen: dict = {}
    write = VideoWriter.write

    def first_write(self, frame):
        seen.setdefault("first_frame_s", round(time.time() - started, 3))
        return write(self, frame)

    VideoWriter.write = first_write
    return seen


def run_generate(folder: str, audio: str, shapes: str, network: bool) -> dict:
    from lipdub.pipeline import GenerateOptions, generate
    from lipdub.video import probe

    t0 = time.perf_counter()
    out = generate(folder, audio, WORK / f"out_{Path(folder).name}_{Path(audio).stem}.mp4",
                   GenerateOptions(shapes=shapes, use_network=network))
    wall = time.perf_counter() - t0
    n = int(round(probe(out).duration * 25))
    return {"frames": n, "seconds": round(wall, 2), "fps": round(n / wall, 1)}


def run_encode_only(folder: str, audio: str) -> dict:
    from lipdub.audio import load_audio, n_frames_for
    from lipdub.avatar import Avatar
    from lipdub.pipeline import GenerateOptions, template_frames, template_order
    from lipdub.video import EncodeOptions, VideoWriter

    avatar = Avatar.load(folder)
    g = GenerateOptions()
    t0 = time.perf_counter()
    n = n_frames_for(load_audio(audio), avatar.fps)
    order = template_order(n, avatar.n_frames)
    with VideoWriter(WORK / f"encode_only_{Path(folder).name}.mp4", avatar.width, avatar.height,
                     EncodeOptions(fps=avatar.fps, crf=g.crf, preset=g.preset), audio=audio) as writer:
        for frame in template_frames(avatar, order):
            writer.write(frame)
    wall = time.perf_counter() - t0
    return {"frames": n, "seconds": round(wall, 2), "fps": round(n / wall, 1)}


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM). Not ru_maxrss: Linux carries that across
    fork + exec, so every child would report the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def cpu_seconds(who: int) -> float:
    use = resource.getrusage(who)
    return round(use.ru_utime + use.ru_stime, 2)


def child(args) -> int:
    seen = _watch_first_write(args.started)
    if args.child == "generate":
        result = run_generate(args.folder, args.audio, args.shapes, args.network == "on")
    else:
        result = run_encode_only(args.folder, args.audio)
    result.update(seen)
    result["peak_rss_mb"] = peak_rss_mb()
    # CPU time of this process (decode, render, features; imports) and of ffmpeg (the encoder):
    # on a CPU-bound machine every second of the first is taken from the second.
    result["python_cpu_s"] = cpu_seconds(resource.RUSAGE_SELF)
    result["ffmpeg_cpu_s"] = cpu_seconds(resource.RUSAGE_CHILDREN)
    print(json.dumps(result))
    return 0


#: --src: run the passes against another checkout's ``src`` (a before/after under the same load)
SRC: str | None = None


def in_subprocess(kind: str, folder: Path, audio: Path, shapes: str, network: str = "off",
                  pin: bool = False) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--folder", str(folder), "--audio", str(audio),
           "--shapes", shapes, "--network", network, "--started", repr(time.time())]
    if pin:
        cmd = ["taskset", "-c", "0"] + cmd
    env = {**os.environ, "LIPDUB_PROGRESS": "0"}
    if SRC:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (SRC, env.get("PYTHONPATH")) if p)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--templates", default="720p,closeup720,portrait",
                    help=f"comma-separated, of {', '.join(TEMPLATES)}")
    ap.add_argument("--seconds", type=float, default=30.0, help="seconds of audio for the speed runs")
    ap.add_argument("--long", type=float, default=0.0,
                    help="seconds of audio for the memory run on the first template (0: none)")
    ap.add_argument("--shapes", default=None, choices=["audio", "template"],
                    help="mouth source (default: the motion model if installed)")
    ap.add_argument("--network", default="off", choices=["on", "off", "both"],
                    help="the per-avatar U-Net on, off (network-free path) or both")
    ap.add_argument("--pin", action="store_true", help="run every pass under taskset -c 0")
    ap.add_argument("--repeat", type=int, default=1, help="rounds of generate + encode-only (median ratio)")
    ap.add_argument("--src", default=None,
                    help="a lipdub src folder to run the passes against (e.g. an exported older commit)")
    ap.add_argument("--record", default=None, metavar="KEY",
                    help="also store the report in benchmarks/results/generate_speed.json under "
                         "latest.KEY (the figure it replaces moves to before.KEY_<its date>)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--folder", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--audio", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--started", type=float, default=0.0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args)
    global SRC
    SRC = str(Path(args.src).resolve()) if args.src else None
    names = [n.strip() for n in args.templates.split(",") if n.strip()]
    unknown = [n for n in names if n not in TEMPLATES]
    if unknown:
        ap.error(f"unknown template(s): {', '.join(unknown)}")
    missing = [str(p) for p in [SPEECH] + [TEMPLATES[n] for n in names] if not p.exists()]
    if missing:
        print(json.dumps({"skipped": f"not present: {', '.join(missing)}"}))
        return 0
    shapes = args.shapes
    if shapes is None:
        from lipdub.motion.model import ONNX_PATH
        shapes = "audio" if ONNX_PATH.exists() else "template"
    networks = ["on", "off"] if args.network == "both" else [args.network]
    short = build_audio(args.seconds)
    report = {"shapes": shapes, "pinned_to_one_core": args.pin, "cpu_count": os.cpu_count(), "src": SRC,
              "load_average_before": list(np.round(os.getloadavg(), 2)), "templates": {}}
    for name in names:
        folder = build_template(name)
        from lipdub.avatar import Avatar

        avatar = Avatar.load(folder)
        entry = {"size": f"{avatar.width}x{avatar.height}",
                 "mouth_box_px": int(np.median(avatar.boxes[:, 2] - avatar.boxes[:, 0]))}
        # Rounds of (generate..., encode-only) back to back: on a shared machine the load drifts,
        # so each ratio pairs passes minutes apart at most, and the median over rounds is given.
        ratios: dict[str, list] = {net: [] for net in networks}
        for k in range(args.repeat):
            suffix = f"_round{k + 1}" if args.repeat > 1 else ""
            for net in networks:
                entry[f"generate_network_{net}{suffix}"] = in_subprocess("generate", folder, short, shapes,
                                                                         net, args.pin)
            entry[f"encode_only{suffix}"] = in_subprocess("encode", folder, short, shapes, pin=args.pin)
            enc = entry[f"encode_only{suffix}"].get("fps")
            for net in networks:
                fps = entry[f"generate_network_{net}{suffix}"].get("fps")
                if fps and enc:
                    ratios[net].append(fps / enc)
        for net in networks:
            if ratios[net]:
                entry[f"ratio_network_{net}"] = round(float(np.median(ratios[net])), 3)
                if args.repeat > 1:
                    entry[f"ratio_network_{net}_rounds"] = [round(r, 3) for r in ratios[net]]
        report["templates"][name] = entry
    if args.long > 0:
        folder = build_template(names[0])
        long_ = build_audio(args.long)
        first = report["templates"][names[0]]
        first[f"generate_{int(args.long)}s"] = in_subprocess("generate", folder, long_, shapes,
                                                             networks[-1], args.pin)
        key = f"generate_network_{networks[-1]}"
        a = (first.get(key) or first.get(f"{key}_round1") or {}).get("peak_rss_mb")
        b = first[f"generate_{int(args.long)}s"].get("peak_rss_mb")
        if a and b:
            first["rss_growth"] = round(b / a - 1, 3)
    report["load_average_after"] = list(np.round(os.getloadavg(), 2))
    report["measured_at"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    if args.record:
        record(report, args.record,
               " ".join(["python", "benchmarks/generate_speed.py"] + list(argv or sys.argv[1:])))
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


RESULTS = ROOT / "benchmarks" / "results" / "generate_speed.json"


def record(report: dict, key: str, command: str, path: Path = RESULTS) -> None:
    """``report`` into the results file as ``latest[key]``; what was there moves to ``before``."""
    results = json.loads(path.read_text()) if path.exists() else {}
    latest, before = results.setdefault("latest", {}), results.setdefault("before", {})
    if key in latest:
        old = latest[key]
        stamp = old.get("measured_at", "undated") if isinstance(old, dict) else "undated"
        stamp = stamp.replace(" ", "_").replace(":", "h")
        before[f"{key}_{stamp}"] = old
    latest[key] = {"command": command, **report}
    path.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
