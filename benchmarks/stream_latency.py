"""Real-time streaming latency on this machine, printed as JSON.

Feeds speech to ``lipdub.stream`` in 20 ms chunks at real-time pace (as a microphone would) and
measures: time from the first audio chunk to the first frame; per-frame latency from the instant
the audio sample t_i was captured to the frame showing it (p50/p95/p99); frames dropped (never
made, or later than a player's playout deadline); CPU use; and the streaming mouth vs the offline
pipeline's for the same audio (Pearson r of the target landmarks' mouth aperture, and of the
motion model's whisper features).

    python benchmarks/stream_latency.py [--seconds 120] [--whisper-window 3] [--lookahead 0.2]

The avatar is mimictalk_German_20s from ../shared/data, prepared and trained briefly once and
cached under cache/stream_latency/ (a trained copy under cache/bench is reused when present); the
audio is musetalk_eng.wav, looped to --seconds. Skips (JSON with "skipped") when they are absent.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
CACHE = ROOT / "cache" / "stream_latency"


def avatar_dir() -> Path:
    from lipdub.avatar import Avatar, PrepareOptions, prepare
    from lipdub.render.train import TrainOptions, train_renderer

    reuse = ROOT / "cache" / "bench" / "render_eval" / "mimictalk_German_20s" / "avatar_train"
    if (reuse / "renderer.onnx").exists():
        return reuse
    folder = CACHE / "mimictalk_German_20s"
    if not (folder / "renderer.onnx").exists():
        avatar = prepare(DATA / "mimictalk_German_20s.mp4", folder, PrepareOptions(fps=25.0), overwrite=True)
        train_renderer(avatar, TrainOptions(minutes=3, size=128))
    Avatar.load(folder)
    return folder


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--lookahead", type=float, default=0.2)
    ap.add_argument("--whisper-window", type=float, default=None)
    ap.add_argument("--step", type=float, default=None)
    ap.add_argument("--chunk-ms", type=float, default=20.0)
    ap.add_argument("--playout", type=float, default=0.4, help="player deadline after capture (s)")
    ap.add_argument("--compare-seconds", type=float, default=60.0)
    args = ap.parse_args()
    clip, speech = DATA / "mimictalk_German_20s.mp4", DATA / "musetalk_eng.wav"
    if not clip.exists() or not speech.exists():
        print(json.dumps({"skipped": f"{clip} or {speech} is absent"}))
        return 0

    from lipdub.audio import extract_features, load_audio, n_frames_for
    from lipdub.face.geometry import mouth_aperture
    from lipdub.metrics import pearson
    from lipdub.pipeline import GenerateOptions, target_chunks
    from lipdub.stream import StreamOptions, Streamer, paced_chunks

    folder = avatar_dir()
    wav = load_audio(speech)
    n_samples = int(args.seconds * 16000)
    audio = np.tile(wav, int(np.ceil(n_samples / len(wav))))[:n_samples]
    kw = {"lookahead": args.lookahead}
    if args.whisper_window:
        kw["whisper_window"] = args.whisper_window
    if args.step is not None:
        kw["step"] = args.step
    options = StreamOptions(**kw)
    engine = Streamer(folder, options)
    load_before = os.getloadavg()
    cpu0 = cpu_seconds()
    start = time.monotonic()
    chunks = paced_chunks(audio, args.chunk_ms / 1000.0, realtime=True, start=start)
    produced, times, lms = [], [], []
    first = None
    for chunk in chunks:
        for f in engine.feed(chunk):
            first = first if first is not None else f.produced - start
            produced.append(f.produced)
            times.append(f.time)
            lms.append(mouth_aperture(f.landmarks))
    for f in engine.finish():
        produced.append(f.produced)
        times.append(f.time)
        lms.append(mouth_aperture(f.landmarks))
    wall = time.monotonic() - start
    cpu = cpu_seconds() - cpu0
    lat = (np.asarray(produced) - (start + np.asarray(times))) * 1000
    n_expected = n_frames_for(len(audio) / 16000, engine.fps)
    late = int((lat > args.playout * 1000).sum())

    # offline reference for the first compare-seconds
    m = min(len(audio), int(args.compare_seconds * 16000))
    n_cmp = n_frames_for(m / 16000, engine.fps)
    feats = extract_features(audio[:m], fps=engine.fps)
    offline = np.concatenate([lm for _, lm in target_chunks(engine.avatar, feats, n_cmp, GenerateOptions())])
    ap_off = np.asarray([mouth_aperture(x) for x in offline])
    ap_str = np.asarray(lms[:n_cmp])
    result = {
        "machine": f"{os.cpu_count()} CPU cores shared with other work (load {load_before[0]:.1f} at start: "
                   "figures are pessimistic)",
        "avatar": str(folder), "audio": str(speech), "audio_seconds": round(len(audio) / 16000, 2),
        "options": {k: getattr(options, k) for k in ("lookahead", "step", "whisper_window", "whisper_pad")},
        "chunk_ms": args.chunk_ms,
        "first_frame_ms": round(1000 * first, 1) if first is not None else None,
        "latency_ms": {q: round(float(np.percentile(lat, int(q[1:]))), 1) for q in ("p50", "p95", "p99")}
        | {"max": round(float(lat.max()), 1)},
        "frames": len(produced), "frames_expected": n_expected,
        "dropped": (n_expected - len(produced)) + late,
        "late_over_playout": late, "playout_s": args.playout,
        "wall_seconds": round(wall, 2), "realtime_factor": round(wall / (len(audio) / 16000), 3),
        "cpu_cores_used": round(cpu / wall, 2),
        "stage_seconds": {k: round(v, 2) for k, v in engine.timings.items()},
        "aperture_r_vs_offline": round(float(pearson(ap_str, ap_off)), 4),
        "compare_seconds": round(m / 16000, 1),
        "load_after": round(os.getloadavg()[0], 1),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
