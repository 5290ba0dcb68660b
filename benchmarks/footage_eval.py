"""Dubbing real, edited footage in one step (JSON into benchmarks/results/footage_eval.json).

An edited 20 s, 512x512 clip is built at run time from ../shared (never committed) with the
sources' own sound:

  shot 0  person 1 (mimictalk_German_20s, 0-5 s), a tighter crop: the largest face
  shot 1  a 2 s cutaway with no face (a drifting texture)
  shot 2  person 2 (mimictalk_Trump_10s, 0-4 s)
  shot 3  person 3 turning their head (deeplearn_fi__G3kw9HwCqY.000, 0-4 s, up to ~40 deg)
  shot 4  person 1 again (German, 8-12 s)
  shot 5  persons 1 and 2 side by side in one frame (1 s)

Then, timed from the raw file: ``lipdub generate --avatar edited.mp4 --audio speech.wav -o
out.mp4`` with an empty cache (preparation included, no training), with 20 s of other speech
(musetalk_eng.wav); next to it an encode-only pass of the same frames (the machine-speed
reference). Reported:

- per shot: who was dubbed (and whether that is person 1, the expected choice), frames dubbed;
- pass-through: PSNR of every frame that is not dubbed against the source (identical up to the
  encoder: next to the same frames through the encoder alone, and against that encode), and of
  dubbed frames outside their mouth box (nothing drawn elsewhere: no patch at cuts, nothing on
  the other person); the frames at cuts separately;
- length of the output against the audio;
- mouth quality per shot: a second run dubs the clip with its own sound; mouth-box SSIM, PSNR and
  sharpness ratio (generated / real) against the source frames.

    python benchmarks/footage_eval.py [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from lipdub.metrics import psnr, sharpness, ssim
from lipdub.render.condition import int_box
from lipdub.video import EncodeOptions, VideoWriter, ffmpeg_exe, probe, read_frames

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
WORK = ROOT / "cache" / "bench" / "footage_eval"
SIDE, FPS = 512, 25
SOURCES = {
    "german": SHARED / "data" / "mimictalk_German_20s.mp4",
    "trump": SHARED / "data" / "mimictalk_Trump_10s.mp4",
    "turn": SHARED / "extra2" / "deeplearn_fi__G3kw9HwCqY.000.mp4",
}
SPEECH = SHARED / "data" / "musetalk_eng.wav"
# (name, source, start s, seconds, who): who is the list of people on screen
SHOTS = [("person1", "german", 0.0, 5.0, [1]), ("cutaway", None, 0.0, 2.0, []),
         ("person2", "trump", 0.0, 4.0, [2]), ("head_turn", "turn", 0.0, 4.0, [3]),
         ("person1_again", "german", 8.0, 4.0, [1]), ("both", "german+trump", 12.0, 1.0, [1, 2])]


def _frames(name: str, start: float, seconds: float) -> list[np.ndarray]:
    n = int(round(seconds * FPS))
    first = int(round(start * FPS))
    out = []
    for i, f in enumerate(read_frames(SOURCES[name], fps=FPS)):
        if i >= first + n:
            break
        if i >= first:
            out.append(f)
    return out


def _square(frame: np.ndarray, zoom: float = 1.0, centre=None) -> np.ndarray:
    h, w = frame.shape[:2]
    side = int(min(h, w) / zoom)
    cx, cy = centre if centre is not None else (w // 2, h // 2)
    x0 = int(np.clip(cx - side // 2, 0, w - side))
    y0 = int(np.clip(cy - side // 2, 0, h - side))
    return cv2.resize(frame[y0:y0 + side, x0:x0 + side], (SIDE, SIDE), interpolation=cv2.INTER_AREA)


def _audio(name: str, start: float, seconds: float) -> np.ndarray:
    from lipdub.audio import load_audio

    if name is None:
        return np.zeros(int(seconds * 16000), np.float32)
    wav = load_audio(SOURCES[name])
    a = int(start * 16000)
    part = wav[a:a + int(seconds * 16000)]
    return np.pad(part, (0, int(seconds * 16000) - len(part)))


def build_clip(path: Path) -> list[dict]:
    """Write the edited clip (near-lossless H.264 + its sound); returns per-shot truth."""
    from lipdub.face import FaceTracker

    frames, sound, truth = [], [], []
    for name, src, start, seconds, who in SHOTS:
        first = len(frames)
        if src is None:
            ys, xs = np.mgrid[0:SIDE, 0:SIDE].astype(np.float32)
            for k in range(int(seconds * FPS)):
                g = 0.5 + 0.5 * np.sin((xs + 3 * k) / 41.0) * np.cos((ys - 2 * k) / 57.0)
                frames.append(np.dstack([90 + 80 * g, 110 + 40 * g, 70 + 30 * g]).astype(np.uint8))
            sound.append(_audio(None, 0, seconds))
        elif src == "german+trump":
            left, right = _frames("german", start, seconds), _frames("trump", 4.0, seconds)
            for a, b in zip(left, right):
                canvas = np.full((SIDE, SIDE, 3), 30, np.uint8)
                canvas[128:384, :256] = cv2.resize(a, (256, 256), interpolation=cv2.INTER_AREA)
                canvas[128:384, 256:] = cv2.resize(b, (256, 256), interpolation=cv2.INTER_AREA)
                frames.append(canvas)
            sound.append(_audio("german", start, seconds))
        else:
            raw = _frames(src, start, seconds)
            centre = None
            if src == "turn":  # centre the square on the face
                with FaceTracker(mode="image") as tracker:
                    lm = tracker.track(raw[0])
                centre = lm[:, :2].mean(0).astype(int) if lm is not None else None
            zoom = 1.2 if src == "german" else 1.0
            frames += [_square(f, zoom, centre) for f in raw]
            sound.append(_audio(src, start, seconds))
        truth.append({"shot": name, "start": first, "stop": len(frames), "people": who})
    wav = path.with_suffix(".wav")
    _write_wav(wav, np.concatenate(sound))
    with VideoWriter(path, SIDE, SIDE, EncodeOptions(fps=FPS, crf=10, preset="medium"), audio=wav) as w:
        for f in frames:
            w.write(f)
    return truth


def _write_wav(path: Path, samples: np.ndarray) -> None:
    import wave

    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(16000)
        f.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())


def run_generate(clip: Path, audio: Path, out: Path, cache: Path) -> float:
    env = {**os.environ, "LIPDUB_CACHE": str(cache), "LIPDUB_PROGRESS": "0"}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "lipdub", "generate", "--avatar", str(clip), "--audio",
                    str(audio), "-o", str(out)], check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def encode_only(frames: list[np.ndarray], audio: Path, out: Path) -> float:
    t0 = time.perf_counter()
    with VideoWriter(out, SIDE, SIDE, EncodeOptions(fps=FPS), audio=audio) as w:
        for f in frames:
            w.write(f)
    return time.perf_counter() - t0


def _outside_box(shape, box, grow: float = 0.15) -> np.ndarray:
    x0, y0, x1, y1 = int_box(box)
    g = int(grow * (x1 - x0))
    mask = np.ones(shape[:2], bool)
    mask[max(0, y0 - g):y1 + g, max(0, x0 - g):x1 + g] = False
    return mask


def analyse(avatar, source: list[np.ndarray], output: list[np.ndarray], truth: list[dict],
            encoded: list[np.ndarray]) -> dict:
    """``encoded``: the source frames through the same encoder alone (what "identical up to the
    encoder" can reach)."""
    shots = []
    cut_frames = {t["start"] for t in truth[1:]} | {t["start"] - 1 for t in truth[1:]}
    untouched, outside, at_cuts, vs_encoded, encoder_alone = [], [], [], [], []
    for t in truth:
        entry = {"shot": t["shot"], "frames": t["stop"] - t["start"], "people_on_screen": t["people"]}
        idx = range(t["start"], min(t["stop"], len(output)))
        w = avatar.dub_weight[list(idx)]
        entry["frames_dubbed"] = int((w > 0).sum())
        for i in idx:
            if avatar.dub_weight[i] == 0:
                value = psnr(output[i], source[i])
                untouched.append(value)
                vs_encoded.append(psnr(output[i], encoded[i]))
                encoder_alone.append(psnr(encoded[i], source[i]))
            else:
                value = psnr(output[i], source[i], _outside_box(source[i].shape, avatar.boxes[i]))
                outside.append(value)
            if i in cut_frames:
                at_cuts.append(value)
        shots.append(entry)
    people = avatar.people
    for entry, rec in zip(shots, people.get("shots", [])):
        entry["people_found"] = rec["people"]
    return {"shots": shots, "dubbed_person": people.get("dubbed_person"),
            "untouched_frames": len(untouched),
            "untouched_psnr_min": round(float(min(untouched)), 2) if untouched else None,
            "untouched_psnr_mean": round(float(np.mean(untouched)), 2) if untouched else None,
            "untouched_share_at_least_40db": round(float(np.mean(np.array(untouched) >= 40)), 3)
            if untouched else None,
            "encoder_alone_psnr_min": round(float(min(encoder_alone)), 2) if untouched else None,
            "encoder_alone_psnr_mean": round(float(np.mean(encoder_alone)), 2) if untouched else None,
            "untouched_vs_encoder_alone_psnr_min": round(float(min(vs_encoded)), 2) if untouched else None,
            "dubbed_outside_mouth_psnr_min": round(float(min(outside)), 2) if outside else None,
            "at_cuts_psnr_min": round(float(min(at_cuts)), 2) if at_cuts else None}


def mouth_quality(avatar, source, output, truth) -> list[dict]:
    out = []
    for t in truth:
        vals = {"ssim": [], "psnr": [], "sharpness_ratio": []}
        for i in range(t["start"], min(t["stop"], len(output))):
            if avatar.dub_weight[i] < 1:
                continue
            x0, y0, x1, y1 = int_box(avatar.boxes[i])
            g, r = output[i][y0:y1, x0:x1], source[i][y0:y1, x0:x1]
            vals["ssim"].append(ssim(g, r))
            vals["psnr"].append(min(psnr(g, r), 99.0))
            vals["sharpness_ratio"].append(sharpness(g) / max(sharpness(r), 1e-6))
        out.append({"shot": t["shot"], "frames": len(vals["ssim"]),
                    **{k: round(float(np.mean(v)), 4) if v else None for k, v in vals.items()}})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "footage_eval.json")
    args = ap.parse_args(argv)
    missing = [str(p) for p in [*SOURCES.values(), SPEECH] if not p.exists()]
    if missing:
        print(json.dumps({"skipped": f"missing {', '.join(missing)}"}))
        return 0
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    clip = WORK / "edited.mp4"
    truth = build_clip(clip)
    source = list(read_frames(clip, fps=FPS))
    speech = WORK / "speech.wav"
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(SPEECH), "-t",
                    f"{len(source) / FPS:.3f}", "-ac", "1", "-ar", "16000", str(speech)], check=True)

    seconds = run_generate(clip, speech, WORK / "dubbed.mp4", WORK / "cache")
    encode = encode_only(source, speech, WORK / "encode_only.mp4")
    from lipdub.avatar import Avatar

    (folder,) = [p for p in (WORK / "cache").iterdir() if p.is_dir()]
    avatar = Avatar.load(folder)
    dubbed = list(read_frames(WORK / "dubbed.mp4", fps=FPS))
    info, audio_info = probe(WORK / "dubbed.mp4"), probe(speech)
    report = {
        "clip": {"seconds": len(source) / FPS, "size": SIDE, "shots": truth},
        "raw_to_video_seconds": round(seconds, 1), "encode_only_seconds": round(encode, 2),
        "ratio_to_encode_only": round(seconds / encode, 1),
        "trained": (folder / "renderer.onnx").exists(),
        "prepare_seconds": avatar.manifest.get("prepare_seconds"),
        "output_frames": len(dubbed), "audio_frames": round(audio_info.duration * FPS, 2),
        "output_minus_audio_seconds": round(info.duration - audio_info.duration, 3),
        "new_speech": analyse(avatar, source, dubbed, truth,
                              list(read_frames(WORK / "encode_only.mp4", fps=FPS))),
    }
    own = run_generate(clip, clip.with_suffix(".wav"), WORK / "self.mp4", WORK / "cache")
    selfdub = list(read_frames(WORK / "self.mp4", fps=FPS))
    report["self_dub_seconds_prepared"] = round(own, 1)
    report["self_dub_mouth_per_shot"] = mouth_quality(avatar, source, selfdub, truth)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    if not args.keep:
        shutil.rmtree(WORK, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
