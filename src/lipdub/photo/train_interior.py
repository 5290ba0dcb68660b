"""Train the generic mouth-interior model on real open-mouth crops of many people.

    python -m lipdub.photo.train_interior --data ../shared/data ../shared/extra \\
        --cache cache/interior --minutes 12 --seed 0

1. Extraction (cached per clip as ``.npz``): every ``--stride``-th frame of every clip is tracked
   (MediaPipe, video mode); frames whose mouth is open (aperture > ``--min-aperture``) give a
   canonical canvas crop (``interior.canonical_matrix``), the opening mask, and the lip/skin colours.
   Clips are listed with their sha256 in the manifest.
2. Training: a small U-Net (plain 3x3 convs, no normalisation: fast on a CPU) maps mask + colours
   (+ the procedural interior, which it corrects) to the crop, L1 inside the (slightly grown) opening only, with left-right flips. Clips are split by
   person (file name) into train and validation.
3. Export: ``src/lipdub/models/mouth_interior.onnx`` and ``mouth_interior_manifest.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

from lipdub.avatar import file_sha256
from lipdub.photo import interior as it

VIDEO_EXT = {".mp4", ".mpg", ".mov", ".avi", ".mkv", ".webm"}


def extract_clip(path: Path, stride: int, min_aperture: float, max_frames: int) -> dict:
    """Open-mouth samples of one clip: crops (N, H, W, 3) uint8, masks (N, H, W), colours (N, 6)."""
    from lipdub.face import FaceTracker, mouth_aperture
    from lipdub.video import read_frames

    crops, masks, colours = [], [], []
    with FaceTracker(mode="video") as tracker:
        for i, frame in enumerate(read_frames(path, fps=25.0, max_size=720)):
            if i >= max_frames:
                break
            lm = tracker.track(frame)  # every frame, so tracking mode stays locked on
            if lm is None or i % stride:
                continue
            if not mouth_aperture(lm) > min_aperture:
                continue
            m2 = it.canonical_matrix(lm, scale=2.0)
            big = cv2.warpAffine(frame, m2, (2 * it.CANVAS_W, 2 * it.CANVAS_H), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REPLICATE)
            crops.append(cv2.resize(big, (it.CANVAS_W, it.CANVAS_H), interpolation=cv2.INTER_AREA))
            masks.append(it.opening_mask(lm, it.canonical_matrix(lm)))
            colours.append(it.mouth_colours(frame, lm))
    n = len(crops)
    return {"crops": np.array(crops, np.uint8).reshape(n, it.CANVAS_H, it.CANVAS_W, 3),
            "masks": np.array(masks, np.float32).reshape(n, it.CANVAS_H, it.CANVAS_W),
            "colours": np.array(colours, np.float32).reshape(n, 6)}


def build_dataset(dirs: list[Path], cache: Path, stride: int, min_aperture: float,
                  max_frames: int, skip_prefix: tuple[str, ...], max_per_prefix: int) -> list[dict]:
    cache.mkdir(parents=True, exist_ok=True)
    clips = []
    for d in dirs:
        files = sorted(p for p in Path(d).iterdir() if p.suffix.lower() in VIDEO_EXT)
        counts: dict[str, int] = {}
        for p in files:
            prefix = next((s for s in skip_prefix if p.name.startswith(s)), None)
            if prefix is not None:  # one-speaker corpora: a few clips are enough
                counts[prefix] = counts.get(prefix, 0) + 1
                if counts[prefix] > max_per_prefix:
                    continue
            clips.append(p)
    out = []
    for p in clips:
        sha = file_sha256(p)
        npz = cache / f"{p.stem}-{sha[:12]}-s{stride}.npz"
        if not npz.exists():
            t = time.time()
            try:
                data = extract_clip(p, stride, min_aperture, max_frames)
            except Exception as exc:  # a clip ffmpeg or the tracker cannot use: skip, say so
                print(f"skip {p.name}: {exc}", flush=True)
                continue
            np.savez_compressed(npz, **data)
            print(f"{p.name}: {len(data['crops'])} samples ({time.time() - t:.0f} s)", flush=True)
        data = dict(np.load(npz))
        out.append({"file": p.name, "folder": p.parent.name, "sha256": sha, "n": len(data["crops"]),
                    "person": p.stem.split("_s1_")[0] if "_s1_" in p.stem else p.stem, **data})
    return out


def make_net():
    import torch
    from torch import nn

    def block(cin, cout):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.LeakyReLU(0.1, True),
                             nn.Conv2d(cout, cout, 3, padding=1), nn.LeakyReLU(0.1, True))

    class InteriorNet(nn.Module):
        def __init__(self, w=(24, 48, 96)):
            super().__init__()
            self.e1, self.e2, self.e3 = block(it.N_INPUT, w[0]), block(w[0], w[1]), block(w[1], w[2])
            self.pool = nn.AvgPool2d(2)
            self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
            self.d2, self.d1 = block(w[2] + w[1], w[1]), block(w[1] + w[0], w[0])
            self.out = nn.Conv2d(w[0], 3, 1)
            # Zero correction at the start: the untrained net paints the procedural interior.
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

        def forward(self, x):
            a = self.e1(x)
            b = self.e2(self.pool(a))
            c = self.e3(self.pool(b))
            d = self.d2(torch.cat([self.up(c), b], 1))
            e = self.d1(torch.cat([self.up(d), a], 1))
            # Colour constancy: the correction is a gain on the lip colour (a cavity is "a third
            # as bright as the lips" under any lighting), so brighter or darker photos than the
            # training clips get interiors lit like their own lips.
            lip = x[:, 1:4] + 0.05
            ratio = x[:, 9:12] / lip + 1.5 * torch.tanh(self.out(e))
            return torch.clamp(ratio * lip, 0.0, 1.0)

    return InteriorNet()


def train(samples: list[dict], minutes: float, seed: int, batch: int, val_people: int,
          min_area: float = 0.0):
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    people = sorted({s["person"] for s in samples if s["n"] > 0})
    val = set(rng.choice(people, size=min(val_people, max(len(people) - 1, 0)), replace=False))

    def stack(sel):
        parts = [s for s in samples if s["n"] > 0 and sel(s)]
        crops = np.concatenate([s["crops"] for s in parts]).astype(np.float32) / 255.0
        masks = np.concatenate([s["masks"] for s in parts])
        cols = np.concatenate([s["colours"] for s in parts])
        # Barely parted lips teach nothing about teeth and tongue; keep clearly open mouths.
        keep = masks.mean(axis=(1, 2)) >= min_area
        return crops[keep], masks[keep], cols[keep]

    tr, va = stack(lambda s: s["person"] not in val), stack(lambda s: s["person"] in val)
    print(f"train {len(tr[0])} samples, validation {len(va[0])} ({len(val)} people)", flush=True)
    net = make_net()
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    grow = np.ones((3, 3), np.uint8)

    def loss_on(crops, masks, cols, idx, flip=False):
        m = masks[idx]
        c = cols[idx]
        y = crops[idx]
        if flip:
            m, y = m[:, :, ::-1], y[:, :, ::-1]
        # The opening plus a pixel (the lip edge it blends into); each sample weighs the same, so
        # the many small openings do not drown the wide ones that show teeth and tongue.
        w = np.stack([cv2.dilate(k, grow, iterations=1) for k in m])
        w = w / (w.sum(axis=(1, 2), keepdims=True) + 1e-6)
        x = torch.from_numpy(it.model_input(np.ascontiguousarray(m), c))
        target = torch.from_numpy(np.ascontiguousarray(np.transpose(y, (0, 3, 1, 2))))
        wt = torch.from_numpy(w.astype(np.float32))[:, None]
        pred = net(x)
        return (wt * (pred - target).abs()).sum() / (3 * len(idx))

    t0, step, log = time.time(), 0, []
    while time.time() - t0 < minutes * 60:
        idx = rng.integers(0, len(tr[0]), batch)
        loss = loss_on(*tr, idx, flip=bool(rng.random() < 0.5))
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % 200 == 0:
            with torch.no_grad():
                vl = float(loss_on(*va, np.arange(min(len(va[0]), 512)))) if len(va[0]) else float("nan")
            log.append({"step": step, "seconds": round(time.time() - t0), "train_l1": float(loss.detach()),
                        "val_l1": vl})
            print(log[-1], flush=True)
    return net, log, sorted(val), len(tr[0]), len(va[0])


def export(net, path: Path) -> None:
    import torch

    net.eval()
    x = torch.zeros(1, it.N_INPUT, it.CANVAS_H, it.CANVAS_W)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(net, x, str(path), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "b"}, "y": {0: "b"}}, opset_version=17, dynamo=False)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="+", default=["../shared/data", "../shared/extra"])
    ap.add_argument("--cache", default="cache/interior")
    ap.add_argument("--out", default=str(it.ONNX_PATH))
    ap.add_argument("--stride", type=int, default=3)
    ap.add_argument("--min-aperture", type=float, default=0.08)  # at extraction (cached)
    ap.add_argument("--max-frames", type=int, default=750, help="frames read per clip (25 fps)")
    ap.add_argument("--grid-clips", type=int, default=12, help="clips kept of the one GRID speaker")
    ap.add_argument("--minutes", type=float, default=12.0)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--val-people", type=int, default=6)
    ap.add_argument("--min-area", type=float, default=0.09,
                    help="smallest opening (fraction of the canvas) trained on")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--extract-only", action="store_true")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(1)
    dirs = [Path(d) for d in args.data if Path(d).is_dir()]
    samples = build_dataset(dirs, Path(args.cache), args.stride, args.min_aperture, args.max_frames,
                            ("grid_s1_",), args.grid_clips)
    print(f"{sum(s['n'] for s in samples)} samples from {len(samples)} clips", flush=True)
    if args.extract_only:
        return 0
    net, log, val, n_train, n_val = train(samples, args.minutes, args.seed, args.batch, args.val_people,
                                          args.min_area)
    out = Path(args.out)
    export(net, out)
    manifest = {
        "model": ("mouth interior U-Net (widths 24-48-96), input 12x48x64 (mask, lip and skin colour, "
                  "coordinates, procedural interior), output RGB 0..1 = lip colour x (procedural / lip colour + learned gain correction)"),
        "train_command": "python -m lipdub.photo.train_interior " + " ".join(argv or __import__("sys").argv[1:]),
        "seed": args.seed, "minutes": args.minutes, "batch": args.batch, "stride": args.stride,
        "min_aperture": args.min_aperture, "min_area": args.min_area, "n_train": n_train, "n_val": n_val,
        "validation_people": val, "log": log,
        "data": [{"folder": s["folder"], "file": s["file"], "sha256": s["sha256"], "samples": s["n"]}
                 for s in samples],
        "licence": ("Weights trained on clips from ../shared/data (public research repositories, "
                    "licences per their SOURCES.tsv) and ../shared/extra (research corpora GRID, LRS2, "
                    "LRS3, VoxCeleb2, LRW, MEAD; spectre samples CC-BY-NC-SA): research use only. "
                    "Retrain on your own data with the command above (--data DIR ...) for other use."),
    }
    out.with_name(it.MANIFEST_PATH.name).write_text(json.dumps(manifest, indent=1))
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
