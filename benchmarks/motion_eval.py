"""Leave-speakers-out evaluation of the audio → mouth model, printed as JSON.

    python benchmarks/motion_eval.py [--cache cache/motion] [--retrain] [--out report.json]

Every clip is predicted by fold models that never saw its speaker (k folds by speaker, the
shipped training config). Reported in the same run: per held-out clip r (predicted vs real
inner-lip aperture) and LMD (mean lip/jaw landmark distance, inter-ocular units, around the clip's
own neutral); the loudness-envelope baseline; the shuffled-audio control (the same fold models fed
another held-out speaker's audio); silence statistics; German vs English; speed of the shipped
ONNX model and of the whole audio → motion step. Skips (exit 0, JSON says why) when
``../shared/data`` is absent. Out-of-fold predictions come from ``python -m lipdub.motion.train
--folds 5`` (cached); ``--retrain`` recomputes them here.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
GERMAN = "mimictalk_German_20s.mp4"


def _mean_by_speaker(rows, key):
    by = {}
    for r in rows:
        by.setdefault(r["speaker"], []).append(r[key])
    return float(np.mean([np.mean(v) for v in by.values()])) if by else float("nan")


def speed(model, n: int = 3000) -> dict:
    from lipdub.audio import extract_features, load_audio
    from lipdub.motion import representation as rep

    x = np.random.default_rng(0).normal(size=(n, rep.INPUT_DIM)).astype(np.float32)
    model.run(x[:100])
    t = time.perf_counter()
    model.run(x)
    onnx_fps = n / (time.perf_counter() - t)
    out = {"onnx_frames_per_s": round(onnx_fps, 1)}
    wav = SHARED / "data" / "musetalk_eng.wav"
    if wav.exists():
        audio = load_audio(wav)
        t = time.perf_counter()
        feats = extract_features(audio, 25.0)
        model.predict(feats)
        took = time.perf_counter() - t
        out.update(audio_s=round(len(audio) / 16000, 1), audio_to_motion_s=round(took, 2),
                   x_real_time=round(len(audio) / 16000 / took, 1))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", type=Path, default=ROOT / "cache" / "motion")
    ap.add_argument("--retrain", action="store_true", help="recompute the out-of-fold predictions")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--members", type=int, default=3, help="models per fold with --retrain (shipped: 3)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    if not (SHARED / "data").is_dir():
        print(json.dumps({"skipped": f"{SHARED / 'data'} not present (development machines only)"}))
        return 0

    from lipdub.motion import dataset as ds, representation as rep, training as tr
    from lipdub.motion.model import MotionModel, silence_gate
    from lipdub.motion.train import apply_offsets

    model = MotionModel.load()
    clips, _, _ = ds.build([SHARED / "data", SHARED / "extra"], args.cache / "clips")
    meta_path = args.cache / "oof_meta.json"
    if args.retrain or not meta_path.exists():
        cfg = tr.TrainConfig(**{k: tuple(v) if isinstance(v, list) else v
                                for k, v in model.manifest["train_config"].items()})
        table = model.manifest.get("offsets", {})
        oof, shuf = tr.cross_validate(apply_offsets(clips, table), cfg, k=args.folds, seed=0,
                                      members=args.members, log=lambda m: print(m, file=sys.stderr))
    else:
        table = json.loads(meta_path.read_text())["offsets"]
        with np.load(args.cache / "oof.npz") as z:
            oof = dict(z)
        with np.load(args.cache / "oof_shuffled.npz") as z:
            shuf = dict(z)
    meta = ({"folds": args.folds, "cv_members": args.members} if args.retrain or not meta_path.exists()
            else json.loads(meta_path.read_text()))
    shifted = {c.name: c for c in apply_offsets(clips, table)}

    rows, sil_pred, sil_real, jit_pred, jit_real = [], [], [], [], []
    for c in clips:
        if c.name not in oof:
            continue
        s = shifted[c.name]
        g = silence_gate(s.vad)
        pred = oof[c.name] * g[:, None]
        p_ap, t_ap = rep.aperture(pred), s.aperture
        lmd = np.linalg.norm((pred - s.target).reshape(len(pred), rep.N_POINTS, 3)[..., :2], axis=-1).mean()
        # The clip's original pairing: what r is against the uncorrected (misaligned) mouth.
        lag = table.get(c.name, {}).get("lag", 0) if table.get(c.name, {}).get("shifted") else 0
        raw_t = c.aperture[:c.n - lag] if lag > 0 else c.aperture[-lag:]
        row = {"clip": c.name, "speaker": c.speaker, "frames": s.n,
               "r": round(tr.pearson(p_ap, t_ap), 3),
               "r_ungated": round(tr.pearson(rep.aperture(oof[c.name]), t_ap), 3),
               "r_uncorrected": round(tr.pearson(p_ap, raw_t), 3),
               "lmd_iod": round(float(lmd), 4),
               "envelope_r": round(tr.pearson(s.env, t_ap), 3),
               "shuffled_r": round(tr.pearson(rep.aperture(shuf[c.name][:s.n]), t_ap), 3)
               if c.name in shuf else None,
               "offset_frames": lag}
        rows.append(row)
        silent = g == 0
        if silent.sum() >= 5:
            sil_pred.append(p_ap[silent].mean())
            sil_real.append(t_ap[silent].mean())
            runs = silent[1:] & silent[:-1]
            jit_pred.append(np.abs(np.diff(p_ap))[runs].mean())
            jit_real.append(np.abs(np.diff(t_ap))[runs].mean())

    english = [r for r in rows if r["clip"] != GERMAN]
    german = [r for r in rows if r["clip"] == GERMAN]
    mean_r = _mean_by_speaker(rows, "r")
    env = _mean_by_speaker(rows, "envelope_r")
    summary = {
        "held_out_clips": len(rows), "held_out_speakers": len({r["speaker"] for r in rows}),
        "folds": meta.get("folds", args.folds), "models_per_fold": meta.get("cv_members", 1),
        "mean_r_over_speakers": round(mean_r, 3),
        "mean_r_over_clips": round(float(np.mean([r["r"] for r in rows])), 3),
        "mean_r_ungated": round(_mean_by_speaker(rows, "r_ungated"), 3),
        "mean_r_uncorrected_offsets": round(_mean_by_speaker(rows, "r_uncorrected"), 3),
        "median_r_over_clips": round(float(np.median([r["r"] for r in rows])), 3),
        "mean_lmd_iod": round(_mean_by_speaker(rows, "lmd_iod"), 4),
        "envelope_baseline_r": round(env, 3),
        "ratio_to_envelope": round(mean_r / env, 2) if env > 0 else None,
        "shuffled_audio_r": round(_mean_by_speaker([r for r in rows if r["shuffled_r"] is not None], "shuffled_r"), 3),
        "english_mean_r": round(_mean_by_speaker(english, "r"), 3),
        "german_r": german[0]["r"] if german else None,
        "silence": {"clips_with_silence": len(sil_pred),
                    "pred_aperture_in_silence": round(float(np.mean(sil_pred)), 4) if sil_pred else None,
                    "real_aperture_in_silence": round(float(np.mean(sil_real)), 4) if sil_real else None,
                    "pred_jitter_in_silence": round(float(np.mean(jit_pred)), 5) if jit_pred else None,
                    "real_jitter_in_silence": round(float(np.mean(jit_real)), 5) if jit_real else None,
                    "units": "canonical inner-lip gap above the clip's neutral, inter-ocular units"},
        "clips_offset_corrected": sum(1 for r in rows if r["offset_frames"]),
        "speed": speed(model),
        "model": {"params": model.manifest.get("params"), "onnx_bytes": model.manifest.get("onnx_bytes"),
                  "receptive_field_frames": model.receptive_field},
    }
    report = {"summary": summary, "clips": rows}
    text = json.dumps(report, indent=1)
    if args.out:
        args.out.write_text(text)
    print(json.dumps(summary, indent=1) if args.out else text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
