"""Self-reconstruction benchmark of the renderer (JSON on stdout).

For each clip: cut it at 75 %, prepare both parts, train the renderer on the first part, then
(a) re-render the last part over its own frames with its own tracked mouths (``shapes="template"``)
    and compare with the real frames: mouth-box SSIM / PSNR, sharpness ratio (variance of the
    Laplacian, generated / real), PSNR inside and outside the paste mask; also for the warped real
    mouth alone (no network: the default renderer, from the bank ``prepare`` builds), so the
    network's share is visible (``a_network_gain``, same run);
(c) the same with the mouths the motion model predicts from the held-out speech (``c_motion_*``);
(b) if the motion model is installed, drive the first part (as template) with the last part's audio
    and correlate the generated mouth aperture with the real one; ``below_chin_mad`` is the mean
    absolute difference (grey levels) between the output and its template frame under the
    template's chin (neck and collar, which only the jaw's own motion should move): a second,
    ghost jaw line or a collar pasted from another frame raises it.

    python benchmarks/render_eval.py [--minutes 8] [--clips mimictalk_German_20s.mp4 ...]
Frames are compared in memory (no encode in between). Scratch goes to cache/bench (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from lipdub.avatar import Avatar, PrepareOptions, prepare
from lipdub.composite import paste_mask
from lipdub.metrics import aperture_series, pearson, psnr, sharpness, ssim
from lipdub.pipeline import GenerateOptions, frames, template_order
from lipdub.render.condition import CHIN_IDX, down_direction, int_box, masks, to_crop
from lipdub.render.train import TrainOptions, train_renderer
from lipdub.video import EncodeOptions, ffmpeg_exe, read_frames, write_video

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
CLIPS = ["mimictalk_German_20s.mp4", "edtalk_pose_source2.mp4"]


def split_clip(src: Path, work: Path, fps: float = 25.0) -> tuple[Path, Path, Path]:
    """(first 75 % video, last 25 % video, last 25 % audio wav), frame-exact, near-lossless."""
    all_frames = list(read_frames(src, fps=fps))
    cut = int(round(0.75 * len(all_frames)))
    a, b, wav = work / "train.mp4", work / "test.mp4", work / "test.wav"
    if not b.exists():
        full_wav = work / "full.wav"
        subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(src), "-vn", "-ac", "1",
                        "-ar", "16000", str(full_wav)], check=True)
        for path, start, stop in ((a, 0, cut), (wav, cut, len(all_frames))):
            if path.suffix == ".wav":
                subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(full_wav), "-ss",
                                f"{start / fps:.4f}", "-t", f"{(stop - start) / fps:.4f}", str(path)],
                               check=True)
        opts = EncodeOptions(fps=fps, crf=0, preset="ultrafast")
        write_video(all_frames[:cut], a, audio=None, options=opts)
        write_video(all_frames[cut:], b, audio=wav, options=opts)
    return a, b, wav


def reconstruct(train: Avatar, test: Avatar, wav: Path, use_network: bool,
                shapes: str = "template") -> dict:
    opts = GenerateOptions(template=str(test.path), shapes=shapes, use_network=use_network)
    res = {k: [] for k in ("ssim", "psnr", "sharpness_ratio", "psnr_in_mask", "psnr_out_mask")}
    prev = None
    t_gen, t_real = [], []
    t0 = time.time()
    size = json.loads((Path(train.path) / "renderer.json").read_text())["size"]
    for i, (gen, real) in enumerate(zip(frames(train, wav, opts), test.iter_frames())):
        x0, y0, x1, y1 = int_box(test.boxes[i])
        g, r = gen[y0:y1, x0:x1], real[y0:y1, x0:x1]
        # Frame-to-frame change of the mouth box, generated vs real: > 1 means added flicker.
        if prev is not None and prev[0].shape == g.shape:
            t_gen.append(np.abs(g.astype(np.float32) - prev[0]).mean())
            t_real.append(np.abs(r.astype(np.float32) - prev[1]).mean())
        prev = (g.astype(np.float32), r.astype(np.float32))
        res["ssim"].append(ssim(g, r))
        res["psnr"].append(min(psnr(g, r), 99.0))
        res["sharpness_ratio"].append(sharpness(g) / max(sharpness(r), 1e-6))
        _, alpha = masks([to_crop(test.landmarks[i], test.boxes[i], size)], size)
        m = paste_mask(real.shape, alpha, test.boxes[i])
        res["psnr_in_mask"].append(min(psnr(gen, real, m), 99.0))
        res["psnr_out_mask"].append(min(psnr(gen, real, ~m), 99.0))
    out = {k: round(float(np.mean(v)), 4) for k, v in res.items()}
    out["temporal_change_ratio"] = round(float(np.sum(t_gen) / max(np.sum(t_real), 1e-6)), 3)
    out["frames"] = len(res["ssim"])
    out["render_fps"] = round(out["frames"] / (time.time() - t0), 1)
    return out


def lip_sync(train: Avatar, test: Avatar, wav: Path, work: Path) -> dict:
    from lipdub.face import FaceTracker, fill_gaps, smooth_track

    try:
        gen = list(frames(train, wav, GenerateOptions(shapes="audio")))
    except Exception as exc:  # the motion model may not be shipped yet
        return {"skipped": f"{type(exc).__name__}: {exc}"}
    tracker = FaceTracker(mode="video")
    track = np.stack([t if (t := tracker.track(f)) is not None else np.full((478, 3), np.nan, np.float32)
                      for f in gen])
    write_video(gen, work / "lipsync.mp4", audio=wav)
    below = below_chin_mad(train, gen)
    n = min(len(track), test.n_frames)
    # The real side is the avatar's smoothed track: smooth the generated track the same way.
    window = int((test.manifest.get("settings") or {}).get("smooth", 5))
    gen_track = smooth_track(fill_gaps(track), window)
    r = pearson(aperture_series(gen_track)[:n], aperture_series(test.landmarks)[:n])
    r_raw = pearson(aperture_series(fill_gaps(track))[:n], aperture_series(test.landmarks)[:n])
    return {"aperture_r": round(r, 3), "aperture_r_unsmoothed": round(r_raw, 3), "frames": n,
            "below_chin_mad": below, "video": str(work / "lipsync.mp4")}


def below_chin_mad(template: Avatar, gen: list, gap: float = 0.04, per_frame: bool = False):
    """Mean |output - template| over the mouth box below the template's chin line (pushed ``gap``
    of the box side down): neck and collar."""
    order = template_order(len(gen), template.n_frames)
    diffs = [below_chin_diff(g, t, template.landmarks[i], template.boxes[i], gap)
             for g, t, i in zip(gen, template.iter_frames(order), order)]
    return diffs if per_frame else round(float(np.mean(diffs)), 3)


def below_chin_diff(gen: np.ndarray, tmpl: np.ndarray, landmarks, box, gap: float = 0.04) -> float:
    x0, y0, x1, y1 = int_box(box)
    side = x1 - x0
    lm = to_crop(landmarks, box, side)
    down = down_direction(lm)
    chin = lm[CHIN_IDX] + down * gap * side
    # Pixels below the chin polyline: (p - chin_k) . down > 0 for the nearest chin point.
    ys, xs = np.mgrid[0:side, 0:side].astype(np.float32)
    p = np.stack([xs.ravel(), ys.ravel()], 1)
    near = np.argmin(((p[:, None] - chin[None]) ** 2).sum(-1), 1)
    below = (((p - chin[near]) @ down) > 0).reshape(side, side)
    h, w = tmpl.shape[:2]
    fy0, fy1, fx0, fx1 = max(0, y0), min(h, y1), max(0, x0), min(w, x1)
    below = below[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0]
    d = np.abs(gen[fy0:fy1, fx0:fx1].astype(np.float32) - tmpl[fy0:fy1, fx0:fx1]).mean(-1)
    return float(d[below].mean()) if below.any() else 0.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", nargs="*", default=CLIPS)
    ap.add_argument("--minutes", type=float, default=8.0, help="training budget per clip")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--retrain", action="store_true")
    ap.add_argument("--no-sync", action="store_true", help="skip (b), the motion-driven part")
    args = ap.parse_args(argv)
    report = {}
    for name in args.clips:
        src = DATA / name
        if not src.exists():
            report[name] = {"skipped": f"{src} not present"}
            continue
        work = ROOT / "cache" / "bench" / "render_eval" / Path(name).stem
        work.mkdir(parents=True, exist_ok=True)
        a, b, wav = split_clip(src, work)
        train = prepare(a, work / "avatar_train", PrepareOptions(fps=25.0), overwrite=True) \
            if not (work / "avatar_train").exists() else Avatar.load(work / "avatar_train")
        test = prepare(b, work / "avatar_test", PrepareOptions(fps=25.0), overwrite=True) \
            if not (work / "avatar_test").exists() else Avatar.load(work / "avatar_test")
        meta_path = Path(train.path) / "renderer.json"
        if args.retrain or not meta_path.exists():
            train_renderer(train, TrainOptions(minutes=args.minutes, size=args.size))
        meta = json.loads(meta_path.read_text())
        entry = {"train_frames": train.n_frames, "test_frames": test.n_frames,
                 "train_minutes": round(meta["train_seconds"] / 60, 2), "train_steps": meta["steps"],
                 "size": meta["size"],
                 "a_renderer": reconstruct(train, test, wav, True),
                 "a_warp_only": reconstruct(train, test, wav, False)}
        try:  # the same, with the mouths driven by the held-out speech (the motion model's shapes)
            entry["c_motion_renderer"] = reconstruct(train, test, wav, True, shapes="audio")
            entry["c_motion_warp_only"] = reconstruct(train, test, wav, False, shapes="audio")
        except Exception as exc:  # the motion model may not be installed
            entry["c_motion"] = {"skipped": f"{type(exc).__name__}: {exc}"}
        for arm in ("a", "c_motion"):
            net, free = entry.get(f"{arm}_renderer"), entry.get(f"{arm}_warp_only")
            if net and free:
                entry[f"{arm}_network_gain"] = {k: round(net[k] - free[k], 4)
                                                for k in ("ssim", "psnr", "sharpness_ratio")}
        if not args.no_sync:
            entry["b_motion"] = lip_sync(train, test, wav, work)
        report[name] = entry
        print(json.dumps({name: entry}), file=sys.stderr)
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
