"""Clean leave-speakers-out evaluation of the audio → mouth model, as JSON.

    python benchmarks/motion_eval.py --run main [--run pass1 ...] [--out report.json]

Each ``--run`` is a cross-validation run of ``python -m lipdub.motion.train --cv ... --run NAME``:
every clip of a test fold was predicted by models trained only on other folds of the fixed fold
file (``benchmarks/results/motion_folds.json``). Scoring is clean:

- every held-out clip is scored at its *original* audio/video pairing (offsets found by the
  offset search are used to re-pair training clips only);
- the output delay for fold k is the mean best lag measured on the *other* folds' predictions;
- the corpus amplitude map for fold k is fitted on the other folds' predictions; the per-avatar
  ("self") map of a clip is fitted on its first 60 % and scored on the rest (clips >= 10 s).

Per clip and summarised per speaker, per fold group (development folds, fresh fold) and language:
aperture r at lag 0 and the best lag (±2), the amplitude ratio (mean, 90th percentile, during
speech; raw, corpus map, self map), lip-closure recall/precision, LMD, jitter in silence, the
loudness-envelope baseline and the shuffled-audio control. Skips (exit 0) without ../shared/data.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SELF_MIN_FRAMES, SELF_SPLIT = 250, 0.6


def _r(v, nd=3):
    return None if v is None or not np.isfinite(v) else round(float(v), nd)


def fold_delays(clips, oof, fold_of) -> dict[int, int]:
    """Per fold: round(mean best lag over speakers of the *other* folds)."""
    from lipdub.motion.train import mean_best_lag

    out = {}
    for k in sorted(set(fold_of.values())):
        others = [c for c in clips if fold_of[c.speaker] != k]
        out[k] = int(np.round(mean_best_lag(others, oof)))
    return out


def fold_maps(clips, oof, fold_of) -> dict:
    """Per fold: the corpus map fitted on the other folds' predictions, or None when the run has
    none (a ``--cv fresh`` run: its corpus-map figures are then left out, not fitted on itself)."""
    from lipdub.motion.calibrate import AmplitudeMap
    from lipdub.motion.train import corpus_map

    maps = {}
    for k in sorted(set(fold_of.values())):
        others = [c for c in clips if fold_of[c.speaker] != k]
        maps[k] = AmplitudeMap.from_dict(corpus_map(others, oof)) if others else None
    return maps


def face_map(cmap, real_speech):
    from lipdub.motion.calibrate import fit_face_map

    return fit_face_map(cmap, real_speech)


def score_clip(c, pred, shuf, delay, cmap, files, offset: int = 0) -> dict:
    from lipdub.motion import evaluation as ev, representation as rep
    from lipdub.motion.calibrate import fit_amplitude_map
    from lipdub.motion.model import silence_gate, smooth_motion
    from lipdub.motion.offsets import speech_mask_of

    g = silence_gate(c.vad)
    off = smooth_motion(ev.shift(pred, delay), 1.0) * g[:, None]
    raw_ap = rep.aperture(off)
    real = c.aperture
    speech = speech_mask_of(c.vad) & (g >= 1)
    lg = ev.lagged(raw_ap, real)
    undelayed = ev.lagged(rep.aperture(smooth_motion(pred, 1.0) * g[:, None]), real)
    corpus_ap = raw_ap * cmap.gains(raw_ap) if cmap is not None else np.full_like(raw_ap, np.nan)
    lmd = np.linalg.norm((off - c.target).reshape(c.n, rep.N_POINTS, 3)[..., :2], axis=-1).mean()
    row = {"clip": c.name, "speaker": c.speaker, "frames": c.n,
           "language": files.get(c.name, {}).get("language", "en"),
           "r0": _r(lg["r0"]), "best_lag": lg["best_lag"], "r_best": _r(lg["r_best"]),
           "r0_no_delay": _r(undelayed["r0"]), "best_lag_no_delay": undelayed["best_lag"],
           "delay": delay, "lmd_iod": _r(lmd, 4),
           "amp_raw": _r(ev.amplitude_ratio(raw_ap, real, speech)["mean"]),
           "amp_raw_p90": _r(ev.amplitude_ratio(raw_ap, real, speech)["p90"]),
           "amp_corpus": _r(ev.amplitude_ratio(corpus_ap, real, speech)["mean"]),
           "amp_corpus_p90": _r(ev.amplitude_ratio(corpus_ap, real, speech)["p90"]),
           "r0_corpus": _r(ev.pearson(corpus_ap, real))}
    cl_raw = ev.closure_recall(raw_ap, real, speech)
    row.update(closure_recall=_r(cl_raw["recall"]), closure_precision=_r(cl_raw["precision"]),
               real_closures=cl_raw["real_closures"])
    if c.n >= SELF_MIN_FRAMES:
        cut = int(SELF_SPLIT * c.n)
        fit = fit_amplitude_map(raw_ap[:cut][speech[:cut]], real[:cut][speech[:cut]])
        self_ap = raw_ap[cut:] * fit.gains(raw_ap[cut:])
        amp = ev.amplitude_ratio(self_ap, real[cut:], speech[cut:])
        cl = ev.closure_recall(self_ap, real[cut:], speech[cut:])
        row.update(amp_self=_r(amp["mean"]), amp_self_p90=_r(amp["p90"]),
                   closure_recall_self=_r(cl["recall"]))
        # Face-only map: the corpus's predicted quantiles -> this speaker's real ones (its voice
        # plays no part, as when another voice drives the avatar).
        if cmap is not None:
            face = face_map(cmap, real[:cut][speech[:cut]])
            face_ap = raw_ap[cut:] * face.gains(raw_ap[cut:])
            amp_f = ev.amplitude_ratio(face_ap, real[cut:], speech[cut:])
            row.update(amp_face=_r(amp_f["mean"]), amp_face_p90=_r(amp_f["p90"]),
                       closure_recall_face=_r(ev.closure_recall(face_ap, real[cut:], speech[cut:])["recall"]))
    row["envelope_r"] = _r(ev.pearson(c.env, real))
    if shuf is not None:
        m = min(len(shuf), c.n)
        row["shuffled_r"] = _r(ev.pearson(rep.aperture(shuf[:m]), real[:m]))
    # The "clean offsets": the clip's A/V offset as found by the first-pass model that
    # never saw its fold (only where clearly non-zero), applied to the held-out clip too.
    row["offset_frames"] = offset
    row["r0_offsets"] = _r(ev.pearson(*ev.paired_at(raw_ap, real, offset)))
    silent = g == 0
    row["jitter_silence_gen"] = _r(ev.silence_jitter(raw_ap, silent), 5)
    row["jitter_silence_real"] = _r(ev.silence_jitter(real, silent), 5)
    return row


KEYS = ("r0", "r0_offsets", "r_best", "best_lag", "r0_no_delay", "best_lag_no_delay", "lmd_iod", "amp_raw",
        "amp_raw_p90", "amp_corpus", "amp_corpus_p90", "r0_corpus", "amp_self", "amp_self_p90", "amp_face", "amp_face_p90",
        "closure_recall_face",
        "closure_recall", "closure_precision", "closure_recall_self", "envelope_r", "shuffled_r",
        "jitter_silence_gen", "jitter_silence_real")


def summarise(rows) -> dict:
    from lipdub.motion.evaluation import mean_by

    out = {"clips": len(rows), "speakers": len({r["speaker"] for r in rows})}
    for k in KEYS:
        out[k] = _r(mean_by(rows, k), 4 if "jitter" in k or "lmd" in k else 3)
    return out


def clip_lags(run_dir: Path) -> tuple[Path | None, dict[str, int]]:
    """The offsets table run ``run_dir`` trained with (its meta.json's, else ``offsets.json``
    beside the runs folder) and each clip's A/V offset in frames from it (0 unless ``shifted``)."""
    meta = json.loads((run_dir / "meta.json").read_text())
    path = Path(meta["offsets"]) if meta.get("offsets") else run_dir.parent.parent / "offsets.json"
    path = path if path.is_absolute() else ROOT / path
    table = json.loads(path.read_text()) if meta.get("offsets") or path.exists() else {}
    if not table:
        return None, {}
    return path, {n: (t["lag"] if t.get("shifted") else 0) for n, t in table.items()}


def load_run(run_dir: Path) -> tuple[dict, dict, dict]:
    """A run's out-of-fold predictions, those of its shuffled control, and its meta.json."""
    with np.load(run_dir / "oof.npz") as z:
        oof = dict(z)
    shuf = {}
    if (run_dir / "oof_shuffled.npz").exists():
        with np.load(run_dir / "oof_shuffled.npz") as z:
            shuf = dict(z)
    return oof, shuf, json.loads((run_dir / "meta.json").read_text())


def averaged_run(run_dirs: list[Path]) -> tuple[dict, dict, dict]:
    """The mean of several runs' out-of-fold predictions, clip by clip: an ensemble of their fold
    models. The runs must hold the same clips and have trained with the same offsets."""
    loaded = [load_run(d) for d in run_dirs]
    for (oof, _, meta), d in zip(loaded[1:], run_dirs[1:]):
        if set(oof) != set(loaded[0][0]) or meta.get("offsets") != loaded[0][2].get("offsets"):
            raise SystemExit(f"{d} holds other clips or offsets than {run_dirs[0]}: not averaged")

    def mean(part: int) -> dict:
        return {k: np.mean([run[part][k] for run in loaded], axis=0)
                for k in loaded[0][part] if all(k in run[part] for run in loaded)}

    meta = {**loaded[0][2], "members": sum(m.get("members") or 1 for _, _, m in loaded),
            "averaged_runs": [d.name for d in run_dirs]}
    return mean(0), mean(1), meta


def evaluate_run(run_dir: Path, clips, fold_of, folds, loaded=None) -> dict:
    """``loaded``: (oof, shuffled, meta) instead of ``run_dir``'s own (``averaged_run``); the
    offsets table is still ``run_dir``'s."""
    oof, shuf, meta = loaded or load_run(run_dir)
    clips = [c for c in clips if c.name in oof]
    delays = fold_delays(clips, oof, fold_of)
    maps = fold_maps(clips, oof, fold_of)
    files = {k.split("/")[-1]: v for k, v in folds["files"].items()}
    _, lag = clip_lags(run_dir)
    rows = [score_clip(c, oof[c.name], shuf.get(c.name), delays[fold_of[c.speaker]],
                       maps[fold_of[c.speaker]], files, lag.get(c.name, 0)) for c in clips]
    dev = set(folds["dev_folds"])
    groups = {"all": rows,
              "dev_folds": [r for r in rows if fold_of[r["speaker"]] in dev],
              "fresh_fold": [r for r in rows if fold_of[r["speaker"]] == folds["fresh_fold"]]}
    summary = {name: summarise(g) for name, g in groups.items() if g}
    by_lang = {}
    for r in rows:
        by_lang.setdefault(r["language"], []).append(r)
    summary["by_language"] = {k: summarise(v) for k, v in sorted(by_lang.items())}
    by_spk = {}
    for r in rows:
        by_spk.setdefault(r["speaker"], []).append(r)
    speakers = {s: {"fold": fold_of[s], **{k: v for k, v in summarise(v).items()
                                           if k in ("clips", "r0", "r_best", "best_lag", "amp_raw",
                                                    "amp_corpus", "amp_self", "closure_recall")}}
                for s, v in sorted(by_spk.items())}
    name = "+".join(meta["averaged_runs"]) if "averaged_runs" in meta else run_dir.name
    return {"run": name, "config": meta.get("config"), "members_per_fold": meta.get("members"),
            "offsets": meta.get("offsets"), "test_folds": meta.get("test_folds"),
            "delays_per_fold": delays, "summary": summary, "speakers": speakers, "clips": rows}


def data_check(cache: Path, manifest_rows, folds) -> dict:
    """What the first pass found per source folder: face tracked, voice activity, whether the
    audio drives the face (out-of-fold r at the best lag), offsets, clips left out of training."""
    table = json.loads((cache / "offsets.json").read_text())
    out = {}
    for row in manifest_rows:
        root, name = row["file"].split("/", 1)
        t = table.get(name)
        g = out.setdefault(root, {"clips": 0, "tracked_ok": 0, "shifted": 0, "left_out": [], "lags": []})
        g["clips"] += 1
        g["tracked_ok"] += int(bool(row.get("used")))
        if t is None:
            g["left_out"].append({"clip": name, "why": row.get("why", "not tracked")})
            continue
        g["lags"].append(t["lag"] if t["shifted"] else 0)
        g["shifted"] += int(t["shifted"])
        if not t["train"]:
            g["left_out"].append({"clip": name, "why": t["why"]})
    for g in out.values():
        lags = g.pop("lags")
        g["offset_frames_histogram"] = {str(v): lags.count(v) for v in sorted(set(lags))}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", type=Path, default=ROOT / "cache" / "motion")
    ap.add_argument("--folds-file", type=Path, default=ROOT / "benchmarks" / "results" / "motion_folds.json")
    ap.add_argument("--run", action="append", default=None, help="cross-validation run(s) to score")
    ap.add_argument("--run-dir", action="append", type=Path, default=[],
                    help="a run stored elsewhere (e.g. cache/motion_w3/runs/w3 of "
                         "tools/motion_front_end_ablation.py); scored against the same clips")
    ap.add_argument("--average", nargs="+", action="append", default=[], metavar="RUN",
                    help="score the mean of these runs' out-of-fold predictions (an ensemble of "
                         "their fold models) as one run")
    ap.add_argument("--out", type=Path, help="write the full report (per clip) here")
    ap.add_argument("--data-check", type=Path, help="write the first pass's per-folder data check here")
    args = ap.parse_args(argv)
    if not (SHARED / "data").is_dir():
        print(json.dumps({"skipped": f"{SHARED / 'data'} not present (development machines only)"}))
        return 0
    from lipdub.motion.train import DEFAULT_DATA, load_data

    clips, _, manifest_rows, fold_of, folds = load_data(DEFAULT_DATA, args.cache, args.folds_file)
    if args.data_check:
        args.data_check.write_text(json.dumps(data_check(args.cache, manifest_rows, folds), indent=1))
    reports = []
    run_dirs = [args.cache / "runs" / name
                for name in args.run or ([] if args.run_dir or args.average else ["main"])]
    for run_dir in run_dirs + args.run_dir:
        if not (run_dir / "oof.npz").exists():
            print(f"no run {run_dir} (make it with python -m lipdub.motion.train --cv ...)", file=sys.stderr)
            return 1
        reports.append(evaluate_run(run_dir, clips, fold_of, folds))
    for names in args.average:
        dirs = [args.cache / "runs" / name for name in names]
        reports.append(evaluate_run(dirs[0], clips, fold_of, folds, averaged_run(dirs)))
    if args.out:
        args.out.write_text(json.dumps(reports if len(reports) > 1 else reports[0], indent=1))
    short = [{"run": r["run"], "delays_per_fold": r["delays_per_fold"], "summary": r["summary"]}
             for r in reports]
    print(json.dumps(short, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
