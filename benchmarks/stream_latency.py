"""Real-time streaming latency on this machine, printed as JSON.

Feeds speech to ``lipdub.stream`` in 20 ms chunks at real-time pace (as a microphone would) and
measures, per run: time from the first audio chunk to the first frame; per-frame latency from
the instant the audio sample t_i was captured to the frame showing it (p50/p95/p99/max); frames
dropped (never made, made later than a player's playout deadline, or repeated because the
engine gave them up under ``max_latency``); CPU use (this process + the recording's encoder);
and, on the first run, the streaming mouth vs the offline pipeline's for the same audio (Pearson
r of the target landmarks' mouth aperture).

Runs (each in a fresh subprocess): recording off and on (``-o``: every frame encoded to an MP4
from its own thread, as ``lipdub stream -o`` does), unpinned and pinned to one core
(``taskset -c 0``: the margin a slower or busier machine needs).

    python benchmarks/stream_latency.py [--seconds 120] [--avatar german|closeup720]
                                        [--runs free,free+rec,pinned,pinned+rec]

The avatars are prepared (network-free renderer, no training) once under cache/stream_latency/:
``german`` is mimictalk_German_20s (512x512) from ../shared/data, ``closeup720`` the 1280x720
close-up of benchmarks/generate_speed.py. The audio is musetalk_eng.wav, looped to --seconds.
Skips (JSON with "skipped") when they are absent.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
CACHE = ROOT / "cache" / "stream_latency"
SPEECH = DATA / "musetalk_eng.wav"
RUNS = ("free", "free+rec", "pinned", "pinned+rec")


def avatar_dir(name: str) -> Path:
    from lipdub.avatar import Avatar, PrepareOptions, prepare

    folder = CACHE / name
    if not (folder / "manifest.json").exists():
        if name == "closeup720":
            sys.path.insert(0, str(ROOT / "benchmarks"))
            from generate_speed import WORK, _template_clip

            WORK.mkdir(parents=True, exist_ok=True)
            clip = _template_clip("closeup720")
        else:
            clip = DATA / "mimictalk_German_20s.mp4"
        prepare(clip, folder, PrepareOptions(fps=25.0), overwrite=True)
    Avatar.load(folder)
    return folder


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # the recording's ffmpeg, once reaped
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def speech(seconds: float) -> np.ndarray:
    from lipdub.audio import load_audio

    wav = load_audio(SPEECH)
    n = int(seconds * 16000)
    return np.tile(wav, int(np.ceil(n / len(wav))))[:n]


def run_once(args) -> dict:
    """One real-time run in this process."""
    from lipdub.audio import n_frames_for
    from lipdub.face.geometry import mouth_aperture
    from lipdub.stream import Recorder, StreamOptions, Streamer, paced_chunks
    from lipdub.video import EncodeOptions, VideoWriter

    folder = avatar_dir(args.avatar)
    audio = speech(args.seconds)
    kw = {"lookahead": args.lookahead, "max_latency": args.max_latency or None}
    if args.whisper_window:
        kw["whisper_window"] = args.whisper_window
    if args.step is not None:
        kw["step"] = args.step
    options = StreamOptions(**kw)
    t_load = time.monotonic()
    engine = Streamer(folder, options)
    load_seconds = time.monotonic() - t_load
    recorder = sound = None
    if args.record:
        sound = tempfile.NamedTemporaryFile(suffix=".wav", delete=False)
        sound.close()
        with wave.open(sound.name, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(16000)
            w.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
        av = engine.avatar
        recorder = Recorder(VideoWriter(CACHE / f"recorded_{args.avatar}.mp4", av.width, av.height,
                                        EncodeOptions(fps=av.fps, preset="ultrafast", crf=23),
                                        audio=sound.name, expected_seconds=len(audio) / 16000))
    load_before = os.getloadavg()
    cpu0 = cpu_seconds()
    start = time.monotonic()
    produced, times, apertures, repeated = [], [], [], []
    first = None

    def take(frames):
        nonlocal first, repeated
        for f in frames:
            first = first if first is not None else f.produced - start
            produced.append(f.produced)
            times.append(f.time)
            apertures.append(mouth_aperture(f.landmarks))
            repeated.append(f.repeated)
            if recorder is not None:
                recorder.write(f.image)

    try:
        for chunk in paced_chunks(audio, args.chunk_ms / 1000.0, realtime=True, start=start):
            take(engine.feed(chunk))
        take(engine.finish())
        wall = time.monotonic() - start
        if recorder is not None:
            recorder.close()
    except BaseException:
        if recorder is not None:
            recorder.abort()
        raise
    finally:
        if sound is not None:
            os.unlink(sound.name)
    cpu = cpu_seconds() - cpu0
    lat = (np.asarray(produced) - (start + np.asarray(times))) * 1000
    n_expected = n_frames_for(len(audio) / 16000, engine.fps)
    late = lat > args.playout * 1000
    repeated = np.asarray(repeated, bool)
    result = {
        "recording": bool(args.record), "pinned_to_one_core": bool(args.pinned),
        "load_average_at_start": round(load_before[0], 1),
        "engine_load_seconds": round(load_seconds, 2),
        "first_frame_ms": round(1000 * first, 1) if first is not None else None,
        "latency_ms": {q: round(float(np.percentile(lat, int(q[1:]))), 1) for q in ("p50", "p95", "p99")}
        | {"max": round(float(lat.max()), 1)},
        "frames": len(produced), "frames_expected": n_expected,
        "dropped": (n_expected - len(produced)) + int((late | repeated).sum()),
        "late_over_playout": int(late.sum()), "repeated": int(repeated.sum()), "playout_s": args.playout,
        "wall_seconds": round(wall, 2), "realtime_factor": round(wall / (len(audio) / 16000), 3),
        "cpu_cores_used": round(cpu / wall, 2),
        "stage_seconds": {k: round(v, 2) for k, v in engine.timings.items()},
        "recording_blocked_seconds": round(recorder.blocked, 2) if recorder is not None else None,
        "load_average_after": round(os.getloadavg()[0], 1),
    }
    if args.compare_seconds > 0:
        result.update(compare_offline(engine, audio, apertures, args.compare_seconds))
    return result


def compare_offline(engine, audio: np.ndarray, apertures: list, seconds: float) -> dict:
    """Aperture agreement of the streamed mouth with the offline pipeline's, same audio."""
    from lipdub.audio import extract_features, n_frames_for
    from lipdub.face.geometry import mouth_aperture
    from lipdub.metrics import pearson
    from lipdub.pipeline import GenerateOptions, target_chunks

    m = min(len(audio), int(seconds * 16000))
    n_cmp = n_frames_for(m / 16000, engine.fps)
    feats = extract_features(audio[:m], fps=engine.fps)
    offline = np.concatenate([lm for _, lm in target_chunks(engine.avatar, feats, n_cmp, GenerateOptions())])
    ap_off = np.asarray([mouth_aperture(x) for x in offline])
    return {"aperture_r_vs_offline": round(float(pearson(np.asarray(apertures[:n_cmp]), ap_off)), 4),
            "compare_seconds": round(m / 16000, 1)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--avatar", default="german", choices=["german", "closeup720"])
    ap.add_argument("--runs", default=",".join(RUNS), help=f"comma-separated, of {', '.join(RUNS)}")
    ap.add_argument("--lookahead", type=float, default=0.2)
    ap.add_argument("--whisper-window", type=float, default=None)
    ap.add_argument("--step", type=float, default=None)
    ap.add_argument("--chunk-ms", type=float, default=20.0)
    ap.add_argument("--playout", type=float, default=0.4, help="player deadline after capture (s)")
    ap.add_argument("--max-latency", type=float, default=0.4,
                    help="engine gives up frames later than this (s; 0: never), as lipdub stream --realtime")
    ap.add_argument("--compare-seconds", type=float, default=30.0, help="on the first run only")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--record", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--pinned", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_once(args)))
        return 0
    if not SPEECH.exists() or not (DATA / "mimictalk_German_20s.mp4").exists():
        print(json.dumps({"skipped": f"{SPEECH} or the avatar clip is absent"}))
        return 0
    runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    if any(r not in RUNS for r in runs):
        ap.error(f"--runs takes {', '.join(RUNS)}")
    folder = avatar_dir(args.avatar)
    report = {"machine": f"{os.cpu_count()} CPU cores shared with other work (load figures per run)",
              "avatar": str(folder), "audio": str(SPEECH), "audio_seconds": args.seconds,
              "chunk_ms": args.chunk_ms, "lookahead": args.lookahead, "max_latency": args.max_latency,
              "runs": {}}
    passthrough = ["--seconds", str(args.seconds), "--avatar", args.avatar, "--lookahead", str(args.lookahead),
                   "--chunk-ms", str(args.chunk_ms), "--playout", str(args.playout),
                   "--max-latency", str(args.max_latency)]
    if args.whisper_window:
        passthrough += ["--whisper-window", str(args.whisper_window)]
    if args.step is not None:
        passthrough += ["--step", str(args.step)]
    for k, run in enumerate(runs):
        cmd = [sys.executable, __file__, "--child", *passthrough,
               "--compare-seconds", str(args.compare_seconds if k == 0 else 0)]
        if run.endswith("+rec"):
            cmd.append("--record")
        if run.startswith("pinned"):
            cmd = ["taskset", "-c", "0", *cmd, "--pinned"]
        proc = subprocess.run(cmd, capture_output=True, text=True,
                              env={**os.environ, "LIPDUB_PROGRESS": "0"})
        if proc.returncode != 0:
            report["runs"][run] = {"error": proc.stderr.strip().splitlines()[-3:]}
        else:
            report["runs"][run] = json.loads(proc.stdout.strip().splitlines()[-1])
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
