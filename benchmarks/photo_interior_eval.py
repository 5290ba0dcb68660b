"""Held-out mouth interiors: fill a real open mouth from a closed-mouth frame of the same person.

    python benchmarks/photo_interior_eval.py [--fold heldout|fresh] [--interiors procedural model ...]
        [--out benchmarks/results/photo_interior_eval.json] [--stills DIR]

For each held-out speaker (``lipdub.photo.interior_data.HELDOUT``; never trained on; ``--fold
fresh`` takes the second fold ``FRESH``), from ../shared clips: every frame of the first
``--max-frames`` is tracked; the most closed mouth (or, with ``--photo-aperture``, a slightly open one) is the "photo"; up to ``--per-clip`` open
frames (aperture >= ``--min-aperture``, spread over the clip) are the truth. The closed frame is
aligned to each open frame by a similarity on stable points (eyes, brows, nose, forehead), then
drawn through the photo renderer (``PhotoMouthRenderer``) with the open frame's landmarks as the
target, exactly as a photo avatar is. Inside the real inner-lip opening (canonical mouth canvas at
2x, eroded by one pixel), generated and real pixels are compared:

- ``ssim``: SSIM of CIE L* (Gaussian window), averaged over the opening,
- ``L``, ``a``, ``b``: mean CIE Lab; ``dL``/``da``/``db``: generated minus real, ``dE_mean``: the
  distance between the means, ``dE_mean`` is the colour-statistics score,
- ``teeth``: share of teeth-like pixels (L* > 50 and chroma C*ab < 25),
- ``edge``: mean Sobel magnitude of L* (detail; real ~ blurred < generated < noise),
- ``throat``: share of dark pixels (L* < 20) and ``L_std``: the spread of L* (a mouth is dark
  throat and bright teeth, not their average; added after the first comparison showed the
  U-Net winning on mean colour with a uniform fill).

Frames are averaged per speaker, then speakers are averaged (each person weighs the same).
``interiors`` names: ``drawn`` (the default), ``hybrid`` (drawn detail, U-Net low frequencies), ``procedural``, ``model`` (the shipped ONNX) or a path to another ONNX file,
each optionally suffixed ``+teeth`` (hybrid: the photo's own teeth reused, see ``mouth.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
#: Stable points for aligning the closed frame to the open one: eye corners, brows, nose bridge,
#: forehead (none of them moves with the jaw).
STABLE = [33, 133, 362, 263, 70, 105, 107, 336, 334, 300, 6, 168, 197, 195, 5, 4, 10, 151, 9, 8]
TEETH_L, TEETH_C = 50.0, 25.0
THROAT_L = 20.0


def track_clip(path: Path, max_frames: int):
    from lipdub.face import FaceTracker
    from lipdub.video import read_frames

    lms = []
    with FaceTracker(mode="video") as tracker:
        for i, frame in enumerate(read_frames(path, fps=25.0, max_size=720)):
            if i >= max_frames:
                break
            lm = tracker.track(frame)
            lms.append(np.full((478, 3), np.nan, np.float32) if lm is None else lm)
    return np.array(lms)


def frames_at(path: Path, wanted: set[int]) -> dict[int, np.ndarray]:
    from lipdub.video import read_frames

    out = {}
    for i, frame in enumerate(read_frames(path, fps=25.0, max_size=720)):
        if i in wanted:
            out[i] = frame
        if i >= max(wanted):
            break
    return out


def align(closed: np.ndarray, lc: np.ndarray, lo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The closed frame and its landmarks moved by a similarity onto the open frame's pose."""
    m, _ = cv2.estimateAffinePartial2D(lc[STABLE, :2].astype(np.float32), lo[STABLE, :2].astype(np.float32))
    h, w = closed.shape[:2]
    img = cv2.warpAffine(closed, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    lm = lc.copy()
    lm[:, :2] = lc[:, :2] @ m[:, :2].T + m[:, 2]
    return img, lm


def opening_scores(real: np.ndarray, gen: np.ndarray, lm: np.ndarray) -> dict:
    """Scores of ``gen`` against ``real`` (whole frames) inside ``lm``'s inner-lip opening."""
    from skimage.color import rgb2lab
    from skimage.metrics import structural_similarity

    from lipdub.photo import interior as it

    m2 = it.canonical_matrix(lm, scale=2.0)
    size = (2 * it.CANVAS_W, 2 * it.CANVAS_H)
    crops = [cv2.warpAffine(x, m2, size, flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
             for x in (real, gen)]
    mask = it.opening_mask(lm, m2, (2 * it.CANVAS_H, 2 * it.CANVAS_W)) > 0.5
    mask = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    labs = [rgb2lab(c) for c in crops]
    _, smap = structural_similarity(labs[0][..., 0], labs[1][..., 0], data_range=100.0,
                                    gaussian_weights=True, sigma=1.5, full=True)
    out = {"ssim": float(smap[mask].mean()), "pixels": int(mask.sum())}
    for tag, lab in zip(("real", "gen"), labs):
        px = lab[mask]
        chroma = np.hypot(px[:, 1], px[:, 2])
        gx = cv2.Sobel(lab[..., 0], cv2.CV_64F, 1, 0, ksize=3)
        gy = cv2.Sobel(lab[..., 0], cv2.CV_64F, 0, 1, ksize=3)
        out[tag] = {"L": float(px[:, 0].mean()), "a": float(px[:, 1].mean()), "b": float(px[:, 2].mean()),
                    "teeth": float(((px[:, 0] > TEETH_L) & (chroma < TEETH_C)).mean()),
                    "throat": float((px[:, 0] < THROAT_L).mean()),
                    "L_std": float(px[:, 0].std()),
                    "edge": float(np.hypot(gx, gy)[mask].mean() / 8.0)}
    return out


def make_renderer(name: str, rest_lm: np.ndarray):
    from lipdub.photo import interior as it
    from lipdub.photo.mouth import PhotoMouthRenderer

    base, _, extra = name.partition("+")
    if base == "drawn":
        model = it.InteriorModel(None, drawn=True)
    elif base == "hybrid":
        model = it.InteriorModel(it.ONNX_PATH, drawn=True)
    elif base == "procedural":
        model = it.InteriorModel(None)
    elif base == "model":
        model = it.InteriorModel(it.ONNX_PATH)
    else:
        model = it.InteriorModel(Path(base))
    return PhotoMouthRenderer(rest_lm, model, own_teeth=(extra == "teeth"))


def evaluate_clip(path: Path, interiors: list[str], args, stills: Path | None) -> dict | None:
    from lipdub.face import mouth_aperture

    lms = track_clip(path, args.max_frames)
    ap = mouth_aperture(lms)
    ok = np.isfinite(ap)
    if ok.sum() < 10:
        return None
    # The "photo": the most closed mouth, or (``--photo-aperture``) the frame nearest that opening
    # below the open frames' threshold (a photo that shows some teeth: the hybrid's case).
    closed = int(np.nanargmin(np.where(ok & (ap < args.min_aperture), np.abs(ap - args.photo_aperture), np.inf)))
    open_idx = np.flatnonzero(ok & (ap >= args.min_aperture))
    if len(open_idx) == 0:
        return None
    # Spread over the clip (not only the widest moments): every k-th open frame.
    pick = open_idx[np.linspace(0, len(open_idx) - 1, min(args.per_clip, len(open_idx))).round().astype(int)]
    frames = frames_at(path, set(pick.tolist()) | {closed})
    per = {name: [] for name in interiors}
    for k in pick:
        img, lm_c = align(frames[closed], lms[closed], lms[k])
        for name in interiors:
            renderer = make_renderer(name, lm_c)
            gen = renderer.render(img, lm_c, lms[k])
            per[name].append(opening_scores(frames[k], gen, lms[k]))
            if stills is not None:
                _save_still(stills / f"{path.stem}-{k:04d}-{name.replace('/', '_')}.png", frames[k], gen, lms[k])
    return {"clip": path.name, "closed_frame": closed, "closed_aperture": round(float(ap[closed]), 3),
            "open_frames": pick.tolist(), "apertures": [round(float(ap[k]), 3) for k in pick],
            "scores": {name: _mean(v) for name, v in per.items()}}


def _save_still(path: Path, real: np.ndarray, gen: np.ndarray, lm: np.ndarray) -> None:
    """Real | generated mouth zoom, side by side (for looking; never committed)."""
    from lipdub.face.mesh import LIPS_OUTER

    pts = lm[list(LIPS_OUTER), :2]
    c = pts.mean(0)
    half = 0.9 * np.ptp(pts[:, 0])
    x0, y0 = np.maximum((c - half).astype(int), 0)
    x1, y1 = (c + half).astype(int)
    tiles = [cv2.resize(x[y0:y1, x0:x1], (256, 256), interpolation=cv2.INTER_CUBIC) for x in (real, gen)]
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(tiles, 1), cv2.COLOR_RGB2BGR))


def _mean(rows: list[dict]) -> dict:
    out = {"ssim": float(np.mean([r["ssim"] for r in rows]))}
    for tag in ("real", "gen"):
        out[tag] = {k: float(np.mean([r[tag][k] for r in rows])) for k in rows[0][tag]}
    return out


def summarise(speakers: dict[str, list[dict]], interiors: list[str]) -> dict:
    """Per interior: speaker-averaged scores, the generated-minus-real colour offsets."""
    table = {}
    for name in interiors:
        rows = []
        for clips in speakers.values():
            s = [c["scores"][name] for c in clips]
            rows.append(_mean(s))
        real = {k: float(np.mean([r["real"][k] for r in rows])) for k in rows[0]["real"]}
        gen = {k: float(np.mean([r["gen"][k] for r in rows])) for k in rows[0]["gen"]}
        de = float(np.mean([np.sqrt(sum((r["gen"][c] - r["real"][c]) ** 2 for c in "Lab")) for r in rows]))
        table[name] = {"ssim": round(float(np.mean([r["ssim"] for r in rows])), 4),
                       "dE_mean": round(de, 2),
                       "abs_dL": round(float(np.mean([abs(r["gen"]["L"] - r["real"]["L"]) for r in rows])), 2),
                       "real": {k: round(v, 3) for k, v in real.items()},
                       "gen": {k: round(v, 3) for k, v in gen.items()}}
    return table


def main() -> int:
    from lipdub.photo.interior_data import FRESH, HELDOUT, list_clips

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fold", choices=["heldout", "fresh"], default="heldout")
    ap.add_argument("--interiors", nargs="+", default=["procedural", "model"])
    ap.add_argument("--max-frames", type=int, default=250)
    ap.add_argument("--per-clip", type=int, default=6)
    ap.add_argument("--clips-per-speaker", type=int, default=2)
    ap.add_argument("--min-aperture", type=float, default=0.15)
    ap.add_argument("--photo-aperture", type=float, default=0.0,
                    help="aperture of the frame used as the photo (0 = the most closed)")
    ap.add_argument("--out", default=None, help="JSON file (default: stdout only)")
    ap.add_argument("--stills", default=None, help="folder for real|generated mouth zooms (PNG)")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    people = set(HELDOUT if args.fold == "heldout" else FRESH)
    dirs = [SHARED / d for d in ("data", "extra", "extra2") if (SHARED / d).is_dir()]
    if not dirs:
        print("lipdub: error: ../shared clips are not here; nothing to measure", file=sys.stderr)
        return 1
    t0 = time.time()
    speakers: dict[str, list[dict]] = {}
    for path, who in list_clips(dirs):
        if who not in people or len(speakers.get(who, [])) >= args.clips_per_speaker:
            continue
        res = evaluate_clip(path, args.interiors, args, Path(args.stills) if args.stills else None)
        if res is None:
            print(f"{path.name}: no usable open mouth", file=sys.stderr)
            continue
        speakers.setdefault(who, []).append(res)
        print(f"{who} {path.name}: " + ", ".join(
            f"{n} ssim {res['scores'][n]['ssim']:.3f} L {res['scores'][n]['gen']['L']:.1f}"
            f"/{res['scores'][n]['real']['L']:.1f}" for n in args.interiors), file=sys.stderr, flush=True)
    report = {"fold": args.fold, "speakers": len(speakers), "clips": sum(len(v) for v in speakers.values()),
              "frames": sum(len(c["open_frames"]) for v in speakers.values() for c in v),
              "settings": {k: v for k, v in vars(args).items() if k not in ("out", "stills")},
              "teeth_like": f"L* > {TEETH_L} and C*ab < {TEETH_C}", "throat_like": f"L* < {THROAT_L}",
              "summary": summarise(speakers, args.interiors), "per_speaker": speakers,
              "seconds": round(time.time() - t0, 1)}
    text = json.dumps(report, indent=1)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    print(json.dumps(report["summary"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
