"""Photo avatars measured on their own output with lipdub's tracker; prints JSON.

    python benchmarks/photo_eval.py [--seconds 20] [--idle 10] [--out-dir cache/photo_eval]
    python benchmarks/photo_eval.py --self-drive [--seconds 20]    # sync: photo vs its own video

For the astronaut photo and a few frames cut from ../shared/data clips (used as photos, extracted
to a temporary folder, never kept): an idle template is made, speech (the first ``--seconds`` of
../shared/data/musetalk_eng.wav, else espeak-ng) drives the mouth, the video is encoded, decoded and
tracked (MediaPipe, video mode). Reported per photo:

- blinks per minute and the EAR drop of each blink (1 - min EAR / open-eye median, both eyes),
- head motion: peak-to-peak of the tracked eye midpoint (px and inter-ocular units), and its
  smoothness (RMS second difference, measured vs the template's known trajectory),
- aperture agreement: Pearson r and mean |error| between measured and target mouth aperture,
- background: fraction of far-from-person pixels that the renderer changed before encoding (0 by
  design) and their temporal std after encoding (codec noise only).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
#: Clips a "photo" is cut from: the frame with the most open eyes among the first 50 (a photo
#: with shut or downcast eyes says nothing about blinks).
CLIP_PHOTOS = ["mimictalk_German_20s.mp4", "infinitetalk_ref_video.mp4", "sadtalker_WDA_AOC_000.mp4"]


def _speech(seconds: float, tmp: Path) -> Path:
    from scipy.io import wavfile

    from lipdub.audio import load_audio

    src = SHARED / "musetalk_eng.wav"
    path = tmp / "speech.wav"
    if src.exists():
        wav = load_audio(src)[: int(seconds * 16000)]
        wavfile.write(path, 16000, (np.clip(wav, -1, 1) * 32767).astype(np.int16))
        return path
    from lipdub.demo import SENTENCE, speak

    return speak(" ".join([SENTENCE] * 3), path)


def _photos(tmp: Path) -> list[tuple[str, np.ndarray]]:
    import itertools

    import skimage.data

    from lipdub.face import FaceTracker, eye_aspect_ratio
    from lipdub.video import read_frames

    out = [("astronaut", np.ascontiguousarray(skimage.data.astronaut()[:, :, :3]))]
    for name in CLIP_PHOTOS:
        path = SHARED / name
        if not path.exists():
            continue
        best, best_ear, best_i = None, -1.0, 0
        with FaceTracker(mode="video") as tracker:
            for i, frame in enumerate(itertools.islice(read_frames(path, max_size=720), 50)):
                lm = tracker.track(frame)
                if lm is None:
                    continue
                ear = (eye_aspect_ratio(lm, "left") + eye_aspect_ratio(lm, "right")) / 2
                if ear > best_ear:
                    best, best_ear, best_i = frame, ear, i
        if best is not None:
            out.append((f"{Path(name).stem}@{best_i}", best))
    return out


def _blinks(ear: np.ndarray, fps: float) -> tuple[int, list[float]]:
    base = np.nanmedian(ear)
    low = np.nan_to_num(ear, nan=base) < 0.7 * base
    drops, i = [], 0
    while i < len(low):
        if low[i]:
            j = i
            while j < len(low) and low[j]:
                j += 1
            drops.append(round(float(1 - np.nanmin(ear[i:j]) / base), 3))
            i = j
        else:
            i += 1
    return len(drops), drops


def evaluate(name: str, image: np.ndarray, wav: Path, idle_seconds: float, out_dir: Path,
             interior: str = "drawn") -> dict:
    from lipdub.audio import extract_features
    from lipdub.face import FaceTracker, eye_aspect_ratio, eye_centres, inter_ocular, mouth_aperture
    from lipdub.face.mesh import FACE_OVAL
    from lipdub.photo.idle import make_idle_template
    from lipdub.photo.interior import load_interior
    from lipdub.photo.mouth import PhotoMouthRenderer
    from lipdub.photo.speak import motion_targets, photo_frames, ping_pong
    from lipdub.video import EncodeOptions, VideoWriter, read_frames

    with FaceTracker(mode="image") as tracker:
        landmarks = tracker.track(image)
    if landmarks is None:
        return {"photo": name, "error": "no face"}
    fps = 25.0
    t0 = time.time()
    tmpl = make_idle_template(image, landmarks, seconds=idle_seconds, fps=fps, seed=0)
    features = extract_features(wav, fps=fps)
    order = ping_pong(features.n_frames, tmpl.n_frames)
    targets, source = motion_targets(tmpl.landmarks, features, order)
    h, w = image.shape[:2]
    iod = float(inter_ocular(landmarks))
    centre = landmarks[list(FACE_OVAL), :2].mean(0)
    radius = np.linalg.norm(landmarks[list(FACE_OVAL), :2] - centre, axis=1).max()
    ys, xs = np.mgrid[0:h, 0:w]
    far = (np.hypot(xs - centre[0], ys - centre[1]) > 2.6 * radius) & (ys < landmarks[152, 1] + 0.5 * iod)
    changed = np.zeros((h, w), bool)
    out = out_dir / f"{name}-{interior}.mp4"
    w2, h2 = w - w % 2, h - h % 2
    render_s = 0.0
    with VideoWriter(out, w2, h2, EncodeOptions(fps=fps), audio=wav) as writer:
        t1 = time.time()
        renderer = PhotoMouthRenderer(tmpl.landmarks[0], load_interior(interior))
        for frame in photo_frames(tmpl, targets, order, renderer):
            changed |= (frame != image).any(axis=2)
            writer.write(np.ascontiguousarray(frame[:h2, :w2]))
        render_s = time.time() - t1
    total_s = time.time() - t0

    frames = list(read_frames(out))
    n = min(len(frames), len(targets))
    track = np.full((n, 478, 3), np.nan, np.float32)
    with FaceTracker(mode="video") as tracker:
        for i in range(n):
            lm = tracker.track(frames[i])
            if lm is not None:
                track[i] = lm
    ear = (eye_aspect_ratio(track, "left") + eye_aspect_ratio(track, "right")) / 2
    n_blinks, drops = _blinks(ear, fps)
    planned = int((np.diff((tmpl.closure[order[:n]] > 0.5).astype(int)) == 1).sum())
    r_eye, l_eye = eye_centres(track)
    mid = (r_eye + l_eye) / 2
    k_r, k_l = eye_centres(tmpl.landmarks[order[:n]])
    known = (k_r + k_l) / 2
    ok = np.isfinite(mid).all(1)
    measured_ap = mouth_aperture(track)
    target_ap = mouth_aperture(targets[:n])
    good = np.isfinite(measured_ap)
    stack = np.stack([f[far[:h2, :w2]] for f in frames[:n:5]]).astype(np.float32)

    def rms2(x):
        return float(np.sqrt(np.mean(np.diff(x, 2, axis=0) ** 2)))

    return {
        "photo": name, "size": [w, h], "inter_ocular_px": round(iod, 1), "mouth_source": source,
        "interior": renderer.interior.kind,
        "frames": n, "tracked_fraction": round(float(ok.mean()), 3),
        "render_fps": round(n / max(render_s, 1e-6), 1), "total_seconds": round(total_s, 1),
        "blinks_per_minute": round(n_blinks / (n / fps / 60), 1), "blinks_planned": planned,
        "blinks_measured": n_blinks, "blink_ear_drop": drops,
        "open_ear_median": round(float(np.nanmedian(ear)), 3),
        "head_p2p_px": round(float(np.ptp(mid[ok], axis=0).max()), 2),
        "head_p2p_iod": round(float(np.ptp(mid[ok], axis=0).max() / iod), 4),
        "head_rms_accel_measured_px": round(rms2(mid[ok]), 3),
        "head_rms_accel_known_px": round(rms2(known), 4),
        "aperture_r": round(float(np.corrcoef(measured_ap[good], target_ap[good])[0, 1]), 3),
        "aperture_mae": round(float(np.abs(measured_ap[good] - target_ap[good]).mean()), 4),
        "target_aperture_range": [round(float(target_ap.min()), 3), round(float(target_ap.max()), 3)],
        "far_pixels": int(far.sum()),
        "far_changed_before_encode": round(float(changed[far].mean()), 5) if far.any() else None,
        "far_temporal_std_after_encode": round(float(stack.std(axis=0).mean()), 3) if far.any() else None,
    }


#: Clips for the self-driven sync check (``--self-drive``): people no lipdub model was fitted on
#: (``lipdub.photo.interior_data.HELDOUT``, from ../shared/extra2).
SELF_DRIVE = ["deeplearn_fi_0ObEtA6Q8vU.004.mp4", "dfrf_cnn2_25fps.mp4", "aniportrait_pose_ref_video.mp4",
              "vexpress_RD_Radio10_0_clip_0.mp4"]


def self_drive(path: Path, seconds: float, idle_seconds: float, tmp: Path) -> dict:
    """A frame of ``path`` used as a photo, driven by that clip's own speech: Pearson r between
    the rendered mouth's aperture (re-tracked) and the real video's, frame by frame."""
    from scipy.io import wavfile

    from lipdub.audio import extract_features, load_audio
    from lipdub.face import FaceTracker, eye_aspect_ratio, mouth_aperture
    from lipdub.photo.idle import make_idle_template
    from lipdub.photo.mouth import PhotoMouthRenderer
    from lipdub.photo.speak import motion_targets, photo_frames, ping_pong
    from lipdub.video import read_frames

    fps = 25.0
    n_max = int(seconds * fps)
    real, frames = [], []
    with FaceTracker(mode="video") as tracker:
        for i, frame in enumerate(read_frames(path, fps=fps, max_size=720)):
            if i >= n_max:
                break
            lm = tracker.track(frame)
            real.append(np.nan if lm is None else float(mouth_aperture(lm)))
            if i < 50 and lm is not None:
                frames.append(((eye_aspect_ratio(lm, "left") + eye_aspect_ratio(lm, "right")) / 2, i, frame))
    real = np.array(real)
    # The photo: the most open-eyed of the first 50 frames with a closed-ish mouth.
    closed = [f for f in frames if real[f[1]] < np.nanpercentile(real, 30)] or frames
    _, photo_i, image = max(closed, key=lambda f: f[0])
    wav = tmp / f"{path.stem}.wav"
    audio = load_audio(path)[: int(len(real) / fps * 16000)]
    wavfile.write(wav, 16000, (np.clip(audio, -1, 1) * 32767).astype(np.int16))
    with FaceTracker(mode="image") as tracker:
        landmarks = tracker.track(image)
    tmpl = make_idle_template(image, landmarks, seconds=idle_seconds, fps=fps, seed=0)
    features = extract_features(wav, fps=fps)
    order = ping_pong(features.n_frames, tmpl.n_frames)
    targets, source = motion_targets(tmpl.landmarks, features, order)
    rendered = []
    with FaceTracker(mode="video") as tracker:
        for frame in photo_frames(tmpl, targets, order, PhotoMouthRenderer(tmpl.landmarks[0])):
            lm = tracker.track(frame)
            rendered.append(np.nan if lm is None else float(mouth_aperture(lm)))
    n = min(len(real), len(rendered))
    rendered, real, target = np.array(rendered[:n]), real[:n], mouth_aperture(targets[:n])
    ok = np.isfinite(rendered) & np.isfinite(real)

    def r(a, b):
        return round(float(np.corrcoef(a[ok], b[ok])[0, 1]), 3)

    return {"clip": path.name, "photo_frame": photo_i, "frames": int(ok.sum()), "mouth_source": source,
            "r_rendered_vs_real": r(rendered, real), "r_target_vs_real": r(target, real),
            "r_rendered_vs_target": r(rendered, target),
            "aperture_mean_rendered": round(float(np.nanmean(rendered)), 3),
            "aperture_mean_real": round(float(np.nanmean(real)), 3),
            "aperture_p95_rendered": round(float(np.nanpercentile(rendered, 95)), 3),
            "aperture_p95_real": round(float(np.nanpercentile(real, 95)), 3)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20.0, help="speech length")
    ap.add_argument("--idle", type=float, default=10.0, help="idle template length")
    ap.add_argument("--out-dir", default=str(ROOT / "cache" / "photo_eval"))
    ap.add_argument("--only", default=None, help="evaluate only photos whose name contains this")
    ap.add_argument("--interior", default="drawn", choices=["drawn", "model", "procedural"],
                    help="mouth interior (default: drawn, the renderer's default)")
    ap.add_argument("--self-drive", action="store_true",
                    help="sync check instead: frames of SELF_DRIVE clips driven by their own speech")
    args = ap.parse_args()
    if args.self_drive:
        rows = []
        with tempfile.TemporaryDirectory() as tmp:
            for name in SELF_DRIVE:
                path = ROOT.parent / "shared" / "extra2" / name
                if path.exists():
                    rows.append(self_drive(path, args.seconds, args.idle, Path(tmp)))
                    print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        mean = {k: round(float(np.mean([r[k] for r in rows])), 3) for k in rows[0] if k.startswith("r_")} if rows else {}
        json.dump({"self_drive": rows, "mean": mean}, sys.stdout, indent=1)
        print()
        return 0
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        wav = _speech(args.seconds, Path(tmp))
        for name, image in _photos(Path(tmp)):
            if args.only and args.only not in name:
                continue
            results.append(evaluate(name, image, wav, args.idle, out_dir, args.interior))
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    json.dump({"photos": results}, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
