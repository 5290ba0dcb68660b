"""Fit the mouth-interior models on real open-mouth crops of many people (speaker-grouped).

    python -m lipdub.photo.train_interior --colours --data ../shared/data ../shared/extra \
        ../shared/extra2 --cache cache/interior2            # the shipped colour model (seconds)
    python -m lipdub.photo.train_interior --data ... --minutes 12   # the older U-Net (optional)

Samples come from ``interior_data.build_dataset`` (held-out and fresh-fold people are never used).

- ``--colours``: the colour model of the drawn interior (``interior_layers``): for each sample,
  the mean CIE Lab of its teeth pixels (clearly less saturated than the lips and about as light
  as the skin), its throat (darkest fifth of the opening) and its tongue (saturated pixels of the
  lower third of tall openings) are regressed linearly (ridge) on [lip Lab, skin Lab, 1].
  Written to ``models/mouth_interior_colours.json`` with the data manifest.
- default: a small U-Net (plain 3x3 convs) mapping mask + colours (+ the procedural interior,
  which it corrects) to the crop, L1 inside the opening, exported to ONNX. Kept for comparison:
  it paints the average mouth (see ``interior``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

from lipdub.photo import interior as it
from lipdub.photo import interior_data as data


def layer_samples(samples: list[dict]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per layer: features [lip Lab, skin Lab, 1] ``(N, 7)`` and the layer's mean Lab ``(N, 3)``."""
    feats: dict[str, list] = {k: [] for k in ("teeth", "cavity", "tongue")}
    targets: dict[str, list] = {k: [] for k in feats}
    grow = np.ones((3, 3), np.uint8)
    for s in samples:
        for crop, mask, col in zip(s["crops"], s["masks"], s["colours"]):
            m = cv2.resize(mask, (crop.shape[1], crop.shape[0])) > 0.5
            if m.mean() < 0.05:
                continue
            m = cv2.erode(m.astype(np.uint8), grow) > 0
            lab_img = cv2.cvtColor(crop.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
            lab = lab_img[m].astype(np.float64)
            lip = cv2.cvtColor(col[None, None, :3].astype(np.float32), cv2.COLOR_RGB2LAB)[0, 0]
            skin = cv2.cvtColor(col[None, None, 3:].astype(np.float32), cv2.COLOR_RGB2LAB)[0, 0]
            f = np.concatenate([lip, skin, [1.0]])
            chroma = np.hypot(lab[:, 1], lab[:, 2])
            lip_c = float(np.hypot(lip[1], lip[2]))
            teeth = (chroma < 0.6 * lip_c) & (lab[:, 0] > 0.75 * skin[0])
            if teeth.mean() > 0.08:
                feats["teeth"].append(f)
                targets["teeth"].append(lab[teeth].mean(0))
            dark = lab[:, 0] <= np.percentile(lab[:, 0], 20)
            feats["cavity"].append(f)
            targets["cavity"].append(lab[dark].mean(0))
            rows = np.flatnonzero(m.any(axis=1))
            xs = np.flatnonzero(m.any(axis=0))
            if len(rows) and (rows[-1] - rows[0]) > 0.2 * (xs[-1] - xs[0] + 1):
                ys, cx = np.mgrid[0:m.shape[0], 0:m.shape[1]]
                low = m & (ys > rows[-1] - (rows[-1] - rows[0]) / 3) & (np.abs(cx - m.shape[1] / 2) < m.shape[1] / 5)
                px = lab_img[low].astype(np.float64)
                px = px[np.hypot(px[:, 1], px[:, 2]) > 0.6 * lip_c]
                if len(px) >= 10:
                    feats["tongue"].append(f)
                    targets["tongue"].append(px.mean(0))
    return {k: (np.array(feats[k]), np.array(targets[k])) for k in feats}


def fit_colours(samples: list[dict], ridge: float = 1.0) -> tuple[dict, dict]:
    """Ridge fit per layer; returns (coefficients (3, 7) as lists, fit statistics)."""
    coef, stats = {}, {}
    for k, (x, y) in layer_samples(samples).items():
        reg = ridge * np.eye(x.shape[1])
        reg[-1, -1] = 0.0                     # the intercept is not shrunk
        w = np.linalg.solve(x.T @ x + reg, x.T @ y)     # (7, 3)
        res = y - x @ w
        coef[k] = w.T.round(5).tolist()
        stats[k] = {"samples": int(len(x)), "mean_lab": y.mean(0).round(2).tolist(),
                    "raw_std": y.std(0).round(2).tolist(), "residual_std": res.std(0).round(2).tolist()}
    return coef, stats


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
        # Extraction keeps 2x crops; the U-Net works at the base canvas size.
        crops = np.concatenate([cv2.resize(c, (it.CANVAS_W, it.CANVAS_H), interpolation=cv2.INTER_AREA)[None]
                                for s in parts for c in s["crops"]]).astype(np.float32) / 255.0
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


LICENCE = ("Fitted on clips from ../shared/data (public research repositories, licences per their "
           "SOURCES.tsv), ../shared/extra (research corpora GRID, LRS2, LRS3, VoxCeleb2, LRW, MEAD; "
           "spectre samples CC-BY-NC-SA) and ../shared/extra2 (HDTF, VoxCeleb/LRS-style crops, DFDC, "
           "ChaLearn First Impressions, DOLOS/WILTY, TV and film clips; terms often non-commercial or "
           "unstated): research use only. Refit on data you hold rights to with the command above "
           "(--data DIR ...).")


def _data_manifest(samples: list[dict]) -> list[dict]:
    return [{"folder": s["folder"], "file": s["file"], "sha256": s["sha256"], "speaker": s["person"],
             "samples": s["n"]} for s in samples]


def main(argv=None) -> int:
    import sys

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="+", default=["../shared/data", "../shared/extra", "../shared/extra2"])
    ap.add_argument("--cache", default="cache/interior2")
    ap.add_argument("--colours", action="store_true", help="fit the drawn interior's colour model")
    ap.add_argument("--out", default=None, help="output file (default: the shipped one in models/)")
    ap.add_argument("--stride", type=int, default=2)
    ap.add_argument("--min-aperture", type=float, default=0.08)  # at extraction (cached)
    ap.add_argument("--max-frames", type=int, default=250, help="frames read per clip (25 fps)")
    ap.add_argument("--minutes", type=float, default=12.0)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--val-people", type=int, default=6)
    ap.add_argument("--min-area", type=float, default=0.09,
                    help="smallest opening (fraction of the canvas) trained on")
    ap.add_argument("--ridge", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--extract-only", action="store_true")
    args = ap.parse_args(argv)
    command = "python -m lipdub.photo.train_interior " + " ".join(sys.argv[1:] if argv is None else argv)

    cv2.setNumThreads(1)
    dirs = [Path(d) for d in args.data if Path(d).is_dir()]
    samples = data.build_dataset(dirs, Path(args.cache), args.stride, args.min_aperture, args.max_frames,
                                 set(data.HELDOUT) | set(data.FRESH))
    print(f"{sum(s['n'] for s in samples)} samples from {len(samples)} clips, "
          f"{len({s['person'] for s in samples})} people", flush=True)
    if args.extract_only:
        return 0
    if args.colours:
        from lipdub.photo.interior_layers import COLOUR_MODEL

        coef, stats = fit_colours(samples, args.ridge)
        out = Path(args.out or COLOUR_MODEL)
        record = {"model": "linear maps [lip Lab, skin Lab, 1] -> mean Lab of teeth, cavity (throat), tongue",
                  "train_command": command, "coefficients": coef, "fit": stats,
                  "people": len({s["person"] for s in samples}), "excluded_people": list(data.HELDOUT + data.FRESH),
                  "data": _data_manifest(samples), "licence": LICENCE}
        out.write_text(json.dumps(record, indent=1) + "\n")
        print(json.dumps(stats, indent=1))
        print(f"wrote {out}", flush=True)
        return 0

    import torch

    torch.set_num_threads(args.threads)
    net, log, val, n_train, n_val = train(samples, args.minutes, args.seed, args.batch, args.val_people,
                                          args.min_area)
    out = Path(args.out or it.ONNX_PATH)
    export(net, out)
    manifest = {
        "model": ("mouth interior U-Net (widths 24-48-96), input 12x48x64 (mask, lip and skin colour, "
                  "coordinates, procedural interior), output RGB 0..1 = lip colour x (procedural / lip "
                  "colour + learned gain correction)"),
        "train_command": command,
        "seed": args.seed, "minutes": args.minutes, "batch": args.batch, "stride": args.stride,
        "min_aperture": args.min_aperture, "min_area": args.min_area, "n_train": n_train, "n_val": n_val,
        "validation_people": val, "log": log, "data": _data_manifest(samples), "licence": LICENCE,
    }
    out.with_name(it.MANIFEST_PATH.name).write_text(json.dumps(manifest, indent=1))
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
