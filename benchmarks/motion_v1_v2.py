"""Motion model v1 against v2 on speakers neither trained on (the ``extra2/`` speakers), as JSON.

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/motion_v1_v2.py [--out benchmarks/results/motion_v1_v2.json]

- v1: the model shipped at ``--v1-commit`` (default 42c15e8), read out of git; its manifest lists
  its training clips (``data/`` and ``extra/`` only), and the script checks that no ``extra2/``
  speaker or file is among them. Its input (Whisper state, pooled log-mel, VAD; 545 per frame) and
  output (canonical offsets of the same points) are what the current code prepares and reads.
- v2: for each speaker, the out-of-fold prediction of the cross-validation run ``--run`` (default
  ``final``, the run the shipped v2 was calibrated on): the fold model that never saw that
  speaker's fold (``benchmarks/results/motion_folds.json``). One prediction is recomputed from the
  saved fold nets as a check.

Both are scored by ``motion_eval.score_clip`` against the same tracked real mouth, at each
clip's original audio/video pairing, with the same silence gate and smoothing, output delay 0
(what both shipped manifests use) and no amplitude map (``amp_raw``: predicted / real mean
aperture during speech). Summary: mean over speakers of each speaker's mean over clips.
Skips (exit 0) without ../shared/extra2.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT / "benchmarks"))
KEYS = ("r0", "best_lag", "r_best", "amp_raw", "amp_raw_p90", "closure_recall", "lmd_iod")


def v1_model(commit: str, workdir: Path) -> tuple[Path, dict]:
    """The ONNX and manifest shipped at ``commit``, written to ``workdir``."""
    out = {}
    for name in ("motion.onnx", "motion_manifest.json"):
        data = subprocess.run(["git", "show", f"{commit}:src/lipdub/models/{name}"], cwd=ROOT,
                              check=True, capture_output=True).stdout
        (workdir / name).write_bytes(data)
        out[name] = workdir / name
    return out["motion.onnx"], json.loads(out["motion_manifest.json"].read_text())


def paired(rows: dict) -> dict:
    """Per metric: v2 - v1 of per-speaker means, its mean, standard error, and speakers v2 leads."""
    out = {}
    for k in ("r0", "r_best", "amp_raw"):
        means = {name: {} for name in rows}
        for name, rs in rows.items():
            for r in rs:
                if r[k] is not None:
                    means[name].setdefault(r["speaker"], []).append(r[k])
        both = sorted(set(means["v1"]) & set(means["v2"]))
        d = np.array([np.mean(means["v2"][s]) - np.mean(means["v1"][s]) for s in both])
        out[k] = {"speakers": len(both), "mean_v2_minus_v1": round(float(d.mean()), 4),
                  "sem": round(float(d.std(ddof=1) / np.sqrt(len(d))), 4),
                  "v2_higher": int((d > 0).sum())}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", type=Path, default=ROOT / "cache" / "motion")
    ap.add_argument("--folds-file", type=Path, default=ROOT / "benchmarks" / "results" / "motion_folds.json")
    ap.add_argument("--run", default="final", help="v2 cross-validation run (cache/motion/runs/NAME)")
    ap.add_argument("--v1-commit", default="42c15e8")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "motion_v1_v2.json")
    args = ap.parse_args(argv)
    if not (SHARED / "extra2").is_dir():
        print(json.dumps({"skipped": f"{SHARED / 'extra2'} not present (development machines only)"}))
        return 0
    import torch

    from lipdub.motion import representation as rep, training as tr
    from lipdub.motion.calibrate import AmplitudeMap
    from lipdub.motion.evaluation import mean_by
    from lipdub.motion.model import MotionModel
    from lipdub.motion.train import DEFAULT_DATA, load_data, load_fold_nets
    from motion_eval import score_clip

    torch.set_num_threads(1)
    run_dir = args.cache / "runs" / args.run
    meta = json.loads((run_dir / "meta.json").read_text())
    with np.load(run_dir / "oof.npz") as z:
        oof = dict(z)
    clips, _, _, fold_of, folds = load_data(DEFAULT_DATA, args.cache, args.folds_file)
    test = [c for c in clips if folds["files"].get(f"extra2/{c.name}")]
    missing = [c.name for c in test if c.name not in oof]
    if missing:
        raise SystemExit(f"run {args.run} has no out-of-fold prediction for {missing[:3]}...")

    with tempfile.TemporaryDirectory() as tmp:
        onnx, v1_manifest = v1_model(args.v1_commit, Path(tmp))
        v1_speakers = {d["speaker"] for d in v1_manifest["data"] if d.get("used", True)}
        v1_shas = {d["sha256"] for d in v1_manifest["data"] if d.get("used", True)}
        seen = sorted({c.speaker for c in test if c.speaker in v1_speakers}
                      | {c.name for c in test if c.sha256 in v1_shas})
        if seen:
            raise SystemExit(f"v1 trained on extra2 speakers/clips: {seen[:5]}")
        if int(v1_manifest["input_dim"]) != rep.INPUT_DIM or \
                list(v1_manifest["mouth_points"]) != list(rep.MOUTH_POINTS):
            raise SystemExit("v1's input size or mouth points differ from the current code's")
        v1 = MotionModel(onnx, v1_manifest, threads=1)
        preds_v1 = {c.name: v1.run(c.x) for c in test}

    # Check: the saved out-of-fold prediction is what the fold model gives (first test clip).
    probe = test[0]
    nets = load_fold_nets(run_dir, tr.TrainConfig(**{k: (tuple(v) if k == "dilations" else v)
                                                     for k, v in meta["config"].items()}))
    with torch.no_grad():
        again = np.mean([tr.predict(n, probe.x) for n in nets[fold_of[probe.speaker]]], axis=0)
    probe_diff = float(np.abs(again - oof[probe.name]).max())

    files = {k.split("/")[-1]: v for k, v in folds["files"].items()}
    identity = AmplitudeMap()
    rows = {"v1": [], "v2": []}
    for c in test:
        for name, pred in (("v1", preds_v1[c.name]), ("v2", oof[c.name])):
            row = score_clip(c, pred, None, 0, identity, files, 0)
            rows[name].append({"fold": fold_of[c.speaker], **{k: row[k] for k in ("clip", "speaker", "frames", *KEYS)}})

    def summary(rs):
        return {"clips": len(rs), "speakers": len({r["speaker"] for r in rs}),
                **{k: round(mean_by(rs, k), 4) for k in KEYS}}

    report = {
        "what": "v1 (shipped at %s) vs v2 fold models (run %s) on extra2 speakers, unseen by both"
                % (args.v1_commit, args.run),
        "command": "OMP_NUM_THREADS=1 nice -n 5 python benchmarks/motion_v1_v2.py " + " ".join(
            sys.argv[1:] if argv is None else argv),
        "scoring": "motion_eval.score_clip: original A/V pairing, delay 0, silence gate + smoothing "
                   "sigma 1, no amplitude map; mean over speakers of per-speaker clip means",
        "v1_members": v1_manifest.get("members"), "v2_members_per_fold": meta.get("members"),
        "v2_run_command": meta.get("command"),
        "v2_probe_max_abs_diff": probe_diff,
        "summary": {name: summary(rs) for name, rs in rows.items()},
        "by_fold": {name: {str(k): summary([r for r in rs if r["fold"] == k])
                           for k in sorted({r["fold"] for r in rs})} for name, rs in rows.items()},
        "clips": rows,
    }
    report["paired_by_speaker"] = paired(rows)
    args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps({k: report[k] for k in ("summary", "paired_by_speaker", "v2_probe_max_abs_diff",
                                             "v1_members", "v2_members_per_fold")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
