"""Train the shipped motion model: ``python -m lipdub.motion.train [options]``.

Pipeline (reproducible for a given ``--seed``; features and tracks are cached under ``--cache``):
1. build the dataset: track every video in ``--data`` folders, extract audio features, canonicalise;
2. offset search (``--offsets search``): leave-speakers-out models predict every clip; the lag that
   best correlates prediction and real aperture is that clip's audio-video offset; clips whose lag
   is clearly non-zero are re-paired (shifted), the table is saved;
3. optional leave-speakers-out evaluation (``--folds``), out-of-fold predictions cached for
   ``benchmarks/motion_eval.py``;
4. train ``--members`` networks on all clips, export their average to ONNX with a manifest (data
   files + sha256, offsets, config, model card).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from lipdub.motion import dataset as ds
from lipdub.motion import representation as rep
from lipdub.motion import training as tr
from lipdub.motion.model import MODELS_DIR
from lipdub.motion.modules import Ensemble, n_params

DEFAULT_DATA = [Path(__file__).resolve().parents[4] / "shared" / d for d in ("data", "extra")]
#: Flagged in extra/README: side view / no agreement between loudness and mouth.
SUSPECT = ("pcavs_Input_00002.mp4", "pcavs_Audio_Source_00015.mp4", "pcavs_Input_00098.mp4")
#: A lag is "clearly non-zero" when it is at least MIN_LAG frames, improves r by MIN_GAIN to at
#: least MIN_R, is a real peak (not the search's edge, MAX_LAG) and the clip has MIN_FRAMES to
#: trust it (on 1-s clips a random lag often wins).
MIN_LAG, MIN_GAIN, MIN_R, MAX_LAG, MIN_FRAMES = 2, 0.1, 0.3, 6, 50
MODEL_CARD = (
    "lipdub motion model: audio (Whisper tiny.en encoder states, log-mel, Silero voice activity) -> "
    "canonical lip/jaw landmark offsets, speaker-independent. Trained on short public sample clips "
    "from research corpora (GRID, LRS2, LRS3, VoxCeleb2, LRW, MEAD; spectre samples CC-BY-NC-SA) and "
    "demo clips of talking-face repositories. Those corpora's terms are not stated or are "
    "non-commercial: these weights are for RESEARCH USE ONLY. Retrain on data you hold rights to "
    "with `python -m lipdub.motion.train --data <folders>`. Limitations: ~50 speakers, mostly "
    "English; mouth timing, not identity-specific articulation.")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def aperture_lags(clips, oof: dict) -> dict[str, dict]:
    table = {}
    for c in clips:
        if c.name not in oof:
            continue
        lag, r_lag, r0 = tr.best_lag(rep.aperture(oof[c.name]), c.aperture, MAX_LAG)
        clear = (MIN_LAG <= abs(lag) < MAX_LAG and r_lag - r0 >= MIN_GAIN and r_lag >= MIN_R
                 and c.n >= MIN_FRAMES)
        table[c.name] = {"speaker": c.speaker, "lag": lag, "r_at_lag": round(r_lag, 3),
                         "r_at_0": round(r0, 3), "frames": c.n, "shifted": bool(clear)}
    return table


def apply_offsets(clips, table: dict) -> list:
    return [tr.shift_clip(c, table[c.name]["lag"]) if table.get(c.name, {}).get("shifted") else c
            for c in clips]


def export(nets, path: Path, manifest: dict) -> None:
    """ONNX of the members' average, dynamic time axis; manifest written next to it."""
    ens = Ensemble(nets).eval()
    r = ens.receptive_field
    dummy = torch.zeros(1, 2 * r + 16, rep.INPUT_DIM)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(ens, (dummy,), str(path), input_names=["features"], output_names=["offsets"],
                      dynamic_axes={"features": {0: "batch", 1: "time"},
                                    "offsets": {0: "batch", 1: "time_out"}},
                      opset_version=17, dynamo=False)
    manifest["receptive_field"] = r
    manifest["params"] = n_params(ens)
    manifest["onnx_bytes"] = path.stat().st_size
    path.with_name(path.stem + "_manifest.json").write_text(json.dumps(manifest, indent=1))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lipdub.motion.train", description=__doc__.split("\n")[0])
    ap.add_argument("--data", nargs="+", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--cache", type=Path, default=Path("cache/motion"))
    ap.add_argument("--out", type=Path, default=MODELS_DIR / "motion.onnx")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--corr-weight", type=float, default=tr.TrainConfig.corr_weight)
    ap.add_argument("--width", type=int, default=tr.TrainConfig.width)
    ap.add_argument("--members", type=int, default=3, help="ensemble size of the shipped model")
    ap.add_argument("--folds", type=int, default=0, help="also run k-fold leave-speakers-out evaluation")
    ap.add_argument("--cv-members", type=int, default=1, help="ensemble size inside each evaluation fold")
    ap.add_argument("--offsets", default="search", help="'search', 'none', or a saved offsets JSON")
    ap.add_argument("--drop-suspect", action="store_true", help="leave out the three flagged PC-AVS clips")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = tr.TrainConfig(steps=args.steps, corr_weight=args.corr_weight, width=args.width,
                         threads=args.threads)

    clips, ref, data_manifest = ds.build(args.data, args.cache / "clips")
    if args.drop_suspect:
        clips = [c for c in clips if c.name not in SUSPECT]
        for row in data_manifest:
            if row["file"].split("/")[-1] in SUSPECT:
                row.update(used=False, why="flagged in extra/README and dropped (--drop-suspect)")
    log(f"{len(clips)} clips, {len({c.speaker for c in clips})} speakers, "
        f"{sum(c.n for c in clips) / 25 / 60:.1f} min")

    if args.offsets == "search":
        oof, _ = tr.cross_validate(clips, cfg, k=5, seed=args.seed, log=log)
        table = aperture_lags(clips, oof)
        args.cache.mkdir(parents=True, exist_ok=True)
        (args.cache / "offsets.json").write_text(json.dumps(table, indent=1))
        log(f"offsets: {sum(v['shifted'] for v in table.values())} clips shifted; "
            f"median lag {np.median([v['lag'] for v in table.values()]):+.0f}")
    elif args.offsets == "none":
        table = {}
    else:
        table = json.loads(Path(args.offsets).read_text())
    clips = apply_offsets(clips, table)

    if args.folds:
        oof, shuf = tr.cross_validate(clips, cfg, k=args.folds, seed=args.seed,
                                      members=args.cv_members, log=log)
        rs = {c.name: tr.pearson(rep.aperture(oof[c.name]), c.aperture) for c in clips}
        by_spk = {}
        for c in clips:
            by_spk.setdefault(c.speaker, []).append(rs[c.name])
        log(f"leave-speakers-out r: mean over speakers {np.mean([np.mean(v) for v in by_spk.values()]):.3f}")
        np.savez_compressed(args.cache / "oof.npz", **oof)
        np.savez_compressed(args.cache / "oof_shuffled.npz", **shuf)
        (args.cache / "oof_meta.json").write_text(json.dumps(
            {"folds": args.folds, "cv_members": args.cv_members, "seed": args.seed, "train_config": cfg.to_dict(), "offsets": table}))

    nets = [tr.fit(clips, cfg, seed=args.seed * 1000 + j, log=log) for j in range(args.members)]
    used = [row for row in data_manifest if row.get("used")]
    for row in used:
        row["offset_frames"] = table.get(row["file"].split("/")[-1], {}).get("lag", 0) \
            if table.get(row["file"].split("/")[-1], {}).get("shifted") else 0
    opening = [np.percentile(c.aperture, 90) for c in clips]
    neutrals = np.mean([c.neutral for c in clips], axis=0)
    manifest = {
        "model_card": MODEL_CARD, "licence": "research use only (training data terms)",
        "input": "per frame: Whisper tiny.en state (384), log-mel window pooled to 40x4, VAD (1)",
        "input_dim": rep.INPUT_DIM, "fps": ds.FPS, "mouth_points": list(rep.MOUTH_POINTS),
        "output": "canonical offsets from neutral (inter-ocular units), flattened (K, 3)",
        "reference_stable_points": rep.stable_ref(ref), "generic_neutral": neutrals.round(5).tolist(),
        "typical_open": float(np.median(opening)), "members": args.members, "seed": args.seed,
        "train_config": cfg.to_dict(), "offsets": table,
        "command": "python -m lipdub.motion.train " + " ".join(argv or __import__("sys").argv[1:]),
        "data": data_manifest,
    }
    export(nets, args.out, manifest)
    log(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
