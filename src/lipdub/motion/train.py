"""Train the shipped motion model: ``python -m lipdub.motion.train [options]``.

Pipeline (reproducible for a given ``--seed``; tracks and features are cached under ``--cache``):
1. dataset: track every video in ``--data`` folders, extract audio features, canonicalise; read the
   fixed speaker folds from ``--folds-file`` (written once by ``lipdub.motion.folds`` before any
   training; folds 0..k-2 develop, fold k-1 is fresh);
2. offsets (``--offsets search``): a first-pass cross-validation over every fold; each clip's
   A/V offset and training fitness come from the model that never saw its fold
   (``lipdub.motion.offsets``); clips with a clear offset are re-paired *for training only*;
3. cross-validation (``--cv dev|all``): out-of-fold predictions of the configuration under test,
   saved under ``--cache/runs/--run`` for ``benchmarks/motion_eval.py``;
4. shipping (``--members N``): N networks trained on every usable clip, exported as one ONNX
   averaging them, with a manifest (data files + sha256 + speaker + fold + offset, config, the
   output delay and corpus amplitude map measured on out-of-fold predictions, the model card).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from lipdub.audio import whisper
from lipdub.motion import dataset as ds
from lipdub.motion import feature_norm as fn
from lipdub.motion import folds as fl
from lipdub.motion import offsets as of
from lipdub.motion import representation as rep
from lipdub.motion import training as tr
from lipdub.motion.model import MODELS_DIR
from lipdub.motion.modules import Ensemble, MotionNet, n_params

ROOT = Path(__file__).resolve().parents[3]
DEFAULT_DATA = [ROOT.parent / "shared" / d for d in ("data", "extra", "extra2")]
DEFAULT_FOLDS = ROOT / "benchmarks" / "results" / "motion_folds.json"
MODEL_CARD = (
    "lipdub motion model v5: audio (Whisper tiny.en encoder states of 6 s unpadded windows, blocks 1-3 "
    "and the output side by side, log-mel, "
    "Silero voice activity) -> canonical lip/jaw landmark offsets, speaker-independent{augmented}. "
    "Trained on short public clips from "
    "research corpora and third-party footage (GRID, LRS2, LRS3, VoxCeleb2, LRW, MEAD, HDTF, DFDC, "
    "ChaLearn First Impressions, DOLOS/WILTY TV, spectre samples CC-BY-NC-SA) and demo clips of "
    "talking-face repositories. Those sources' terms are not stated or are non-commercial: these "
    "weights are for RESEARCH USE ONLY. Retrain on data you hold rights to with "
    "`python -m lipdub.motion.train --data <folders>`. Limitations: ~90 speakers, mostly English; "
    "mouth timing and range, not identity-specific articulation.")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def load_data(roots, cache: Path, folds_file: Path, views: int = 0):
    """Clips, reference face, data manifest rows and speaker → fold from the fixed fold file."""
    clips, ref, manifest = ds.build(roots, cache / "clips", views=views)
    table = fl.load_folds(folds_file)
    fold_of = dict(table["speakers"])
    missing = {c.speaker for c in clips} - set(fold_of)
    if missing:
        raise SystemExit(f"speakers without a fold in {folds_file}: {sorted(missing)[:5]}...")
    for row in manifest:
        info = table["files"].get(row["file"], {})
        row["fold"], row["language"] = info.get("fold"), info.get("language")
    return clips, ref, manifest, fold_of, table


def config_from(args) -> tr.TrainConfig:
    return tr.TrainConfig(steps=args.steps, corr_weight=args.corr_weight, width=args.width,
                          spread_weight=args.spread_weight, threads=args.threads,
                          dilations=tuple(args.dilations),
                          augment_p=args.augment_p if args.augment_views else 0.0,
                          input_norm=args.input_norm, input_norm_seconds=args.input_norm_seconds,
                          input_norm_parts=args.input_norm_parts, dropout=args.dropout,
                          in_dropout=args.in_dropout, weight_decay=args.weight_decay,
                          noise=args.noise, lr=args.lr, window=args.window, n_code=args.n_code,
                          closure_weight=args.closure_weight, velocity_weight=args.velocity_weight,
                          target_scale=args.target_scale, pose_clean=args.pose_clean,
                          adversary_weight=args.adversary_weight, phones=args.phones)


def save_run(run_dir: Path, oof, shuffled, nets_by_fold, meta: dict, states=None) -> None:
    """Write a run's files into a scratch folder, then swap it in: an interrupted save leaves the
    previous run of that name whole, never a mix of old and new files. ``states``: the fold nets'
    state dicts, when they are not at hand as nets (``merge_runs``)."""
    import shutil

    meta = {"front_end": front_end(), **meta}  # what the fold nets read (export checks it)
    scratch = run_dir.with_name(run_dir.name + ".partial")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    np.savez_compressed(scratch / "oof.npz", **oof)
    np.savez_compressed(scratch / "oof_shuffled.npz", **shuffled)
    if states is None:
        states = {k: [n.state_dict() for n in nets] for k, nets in nets_by_fold.items()}
    torch.save(states, scratch / "fold_nets.pt")
    (scratch / "meta.json").write_text(json.dumps(meta, indent=1))
    old = run_dir.with_name(run_dir.name + ".old")
    if old.exists() and not run_dir.exists():
        old.rename(run_dir)  # a save interrupted between its two renames: the previous run is back
    shutil.rmtree(old, ignore_errors=True)
    if run_dir.exists():
        run_dir.rename(old)
    scratch.rename(run_dir)
    shutil.rmtree(old, ignore_errors=True)


def merge_runs(run_dirs: list[Path], out: Path) -> None:
    """One run from runs of the same configuration over disjoint test folds."""
    metas = [json.loads((d / "meta.json").read_text()) for d in run_dirs]
    same = ("config", "train_folds", "offsets", "members", "front_end", "speaker_share")
    for m, d in zip(metas[1:], run_dirs[1:]):
        if any(m.get(k) != metas[0].get(k) for k in same):
            raise SystemExit(f"{d} was trained with other settings than {run_dirs[0]}")
    folds = [k for m in metas for k in m["test_folds"]]
    if len(set(folds)) != len(folds):
        raise SystemExit(f"runs share test folds: {sorted(folds)}")
    oof, shuffled, nets = {}, {}, {}
    for d in run_dirs:
        for name, into in (("oof.npz", oof), ("oof_shuffled.npz", shuffled)):
            with np.load(d / name) as z:
                into.update(dict(z))
        nets.update(torch.load(d / "fold_nets.pt"))
    meta = {**metas[0], "test_folds": sorted(folds), "command": [m.get("command") for m in metas],
            "merged_from": [d.name for d in run_dirs]}
    save_run(out, oof, shuffled, {}, meta, states=nets)


def load_fold_nets(run_dir: Path, cfg: tr.TrainConfig) -> dict[int, list[MotionNet]]:
    """The nets a run trained per held-out fold (for exporting a fold model to benchmark with)."""
    states = torch.load(run_dir / "fold_nets.pt")
    out = {}
    for k, sds in states.items():
        nets = []
        for sd in sds:
            net = MotionNet(sd["mu"].shape[0], sd["basis"], cfg.width, tuple(cfg.dilations))
            net.load_state_dict(sd)
            nets.append(net.eval())
        out[int(k)] = nets
    return out


def mean_best_lag(clips, oof: dict, by_speaker: bool = True, max_lag: int = 2) -> float:
    """Mean over speakers of each clip's best lag (±max_lag) of prediction vs real aperture."""
    lags: dict[str, list[int]] = {}
    for c in clips:
        if c.name in oof:
            lags.setdefault(c.speaker, []).append(tr.best_lag(rep.aperture(oof[c.name]), c.aperture, max_lag)[0])
    vals = [np.mean(v) for v in lags.values()] if by_speaker else [lag for v in lags.values() for lag in v]
    return float(np.mean(vals)) if vals else 0.0


def _speech_weighted(clips):
    """(clip, speech mask, per-frame weight) of the clips with speech; each speaker weighs the
    same, however many clips (GRID s1 has 250)."""
    counts: dict[str, int] = {}
    for c in clips:
        counts[c.speaker] = counts.get(c.speaker, 0) + 1
    for c in clips:
        speech = of.speech_mask_of(c.vad)
        if speech.sum() >= 5:
            yield c, speech, np.full(int(speech.sum()), 1.0 / (counts[c.speaker] * speech.sum()))


def corpus_map(clips, oof: dict) -> dict:
    """Corpus amplitude map: out-of-fold predicted → real apertures during speech, all speakers."""
    from lipdub.motion.calibrate import fit_amplitude_map

    rows = [(c, speech, w) for c, speech, w in _speech_weighted(clips) if c.name in oof]
    return fit_amplitude_map(np.concatenate([rep.aperture(oof[c.name])[s] for c, s, _ in rows]),
                             np.concatenate([c.aperture[s] for c, s, _ in rows]),
                             weights=np.concatenate([w for *_, w in rows])).to_dict()


def corpus_opening_pattern(clips) -> list:
    """How the training speakers' mouths move per unit of aperture during speech
    (``representation.opening_pattern``), as the manifest's ``(K, 3)`` list."""
    rows = list(_speech_weighted(clips))
    return rep.opening_pattern([c.target[s] for c, s, _ in rows], [w for *_, w in rows]).round(5).tolist()


def export(nets, path: Path, manifest: dict) -> None:
    """ONNX of the members' average, dynamic time axis; manifest written next to it."""
    ens = Ensemble(nets).eval()
    r = ens.receptive_field
    dummy = torch.zeros(1, 2 * r + 16, rep.INPUT_DIM)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".partial.onnx")
    torch.onnx.export(ens, (dummy,), str(tmp), input_names=["features"], output_names=["offsets"],
                      dynamic_axes={"features": {0: "batch", 1: "time"},
                                    "offsets": {0: "batch", 1: "time_out"}},
                      opset_version=17, dynamo=False)
    manifest["receptive_field"] = r
    manifest["params"] = n_params(ens)
    manifest["onnx_bytes"] = tmp.stat().st_size
    mpath = path.with_name(path.stem + "_manifest.json")
    mtmp = mpath.with_suffix(".partial.json")
    mtmp.write_text(json.dumps(manifest, indent=1))
    tmp.replace(path)
    mtmp.replace(mpath)


def front_end() -> dict:
    """The audio front end the nets of this process were trained on (inference must use the same)."""
    from lipdub.audio.features import front_end as current

    return current(ds._ENCODER[0] if ds._ENCODER else None)


def model_manifest(clips, ref, cfg, data_manifest, table, *, members, seed, delay, amp_map,
                   command, extra=None, front: dict | None = None) -> dict:
    """The shipped manifest; ``front``: the audio front end the nets were trained on (default:
    this process's, right for nets trained here)."""
    opening = [np.percentile(c.aperture, 90) for c in clips]
    for row in data_manifest:
        entry = table.get(row["file"].split("/")[-1], {})
        row["offset_frames"] = entry.get("lag", 0) if entry.get("shifted") else 0
        if row.get("used") and not entry.get("train", True):
            row.update(used=False, why=entry["why"])
    augmented = (", trained with augmented audio (pitch, room, noise, codec, loudness)"
                 if cfg.augment_p > 0 else "")
    if cfg.closure_weight:
        augmented += " and a term that asks it to close the lips where the speaker's are closed"
    out = {
        "model_card": MODEL_CARD.format(augmented=augmented),
        "licence": "research use only (training data terms)",
        "input": (f"per frame: Whisper tiny.en states ({rep.WHISPER_DIM}: encoder layers "
                  f"{list(whisper.LAYERS)} x 384), log-mel window pooled to 40x4, VAD (1)"),
        "input_dim": rep.INPUT_DIM, "fps": ds.FPS, "mouth_points": list(rep.MOUTH_POINTS),
        "output": "canonical offsets from neutral (inter-ocular units), flattened (K, 3)",
        "reference_stable_points": rep.stable_ref(ref),
        "generic_neutral": np.mean([c.neutral for c in clips], axis=0).round(5).tolist(),
        "typical_open": float(np.median(opening)), "opening_pattern": corpus_opening_pattern(clips),
        "members": members, "seed": seed,
        "front_end": front or front_end(),
        "delay_frames": int(delay), "corpus_amplitude_map": amp_map,
        "train_config": cfg.to_dict(), "offsets": table, "command": command, "data": data_manifest,
    }
    out.update(extra or {})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lipdub.motion.train", description=__doc__.split("\n")[0])
    ap.add_argument("--data", nargs="+", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--cache", type=Path, default=Path("cache/motion"))
    ap.add_argument("--folds-file", type=Path, default=DEFAULT_FOLDS)
    ap.add_argument("--out", type=Path, default=MODELS_DIR / "motion.onnx")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=tr.TrainConfig.steps)
    ap.add_argument("--corr-weight", type=float, default=tr.TrainConfig.corr_weight)
    ap.add_argument("--spread-weight", type=float, default=1.0)
    ap.add_argument("--closure-weight", type=float, default=tr.TrainConfig.closure_weight,
                    help="weight of the term against opening where the real lips are closed")
    ap.add_argument("--width", type=int, default=tr.TrainConfig.width)
    ap.add_argument("--dilations", type=int, nargs="+", default=list(tr.TrainConfig.dilations))
    ap.add_argument("--augment-views", type=int, default=0,
                    help="augmented audio versions per clip (pitch, room, noise, codec) to train on")
    ap.add_argument("--augment-p", type=float, default=0.5,
                    help="chance a training window reads an augmented version")
    ap.add_argument("--input-norm", choices=fn.MODES, default="none",
                    help="per-recording mean normalisation of the Whisper input (an ablation; "
                         "cross-validation only: the shipped inference does not apply it)")
    ap.add_argument("--input-norm-seconds", type=float, default=4.0,
                    help="time constant of the causal running mean (--input-norm causal)")
    ap.add_argument("--input-norm-parts", choices=fn.PARTS, default="whisper",
                    help="input columns --input-norm normalises")
    ap.add_argument("--offsets", default="search", help="'search', 'none', or a saved offsets JSON")
    ap.add_argument("--cv", choices=("none", "dev", "fresh", "all"), default="none",
                    help="cross-validate on the development folds, the fresh fold, or all folds")
    ap.add_argument("--cv-folds", type=int, nargs="+",
                    help="only these of --cv's test folds (to share a cross-validation between processes)")
    ap.add_argument("--merge-runs", nargs="+", metavar="RUN",
                    help="join runs made with disjoint --cv-folds into --run, and stop")
    ap.add_argument("--cv-members", type=int, default=1, help="ensemble size inside each fold")
    ap.add_argument("--run", default="main", help="name of the cross-validation run (cache/runs/NAME)")
    ap.add_argument("--members", type=int, default=3, help="ensemble size of the shipped model (0: none)")
    ap.add_argument("--calibration-run", help="run whose out-of-fold predictions give the delay and "
                    "corpus amplitude map of the shipped model (default: --run)")
    ap.add_argument("--derive-offsets", nargs=2, metavar=("RUN", "OUT"),
                    help="write the offset table found from RUN's out-of-fold predictions (all folds) to OUT and stop")
    ap.add_argument("--threads", type=int, default=1)
    # Ablation settings (the fold nets fit their training speakers at r ~0.97 against ~0.54 held
    # out: regularisation, capacity, window, amount and rate of the training audio).
    ap.add_argument("--dropout", type=float, default=tr.TrainConfig.dropout)
    ap.add_argument("--in-dropout", type=float, default=tr.TrainConfig.in_dropout)
    ap.add_argument("--weight-decay", type=float, default=tr.TrainConfig.weight_decay)
    ap.add_argument("--noise", type=float, default=tr.TrainConfig.noise,
                    help="Gaussian input noise, in units of each feature's spread")
    ap.add_argument("--lr", type=float, default=tr.TrainConfig.lr)
    ap.add_argument("--speed", type=float, nargs="*", default=[],
                    help="speed-perturbed training copies of every clip (e.g. 0.9 1.1): audio resampled, "
                         "mouth track resampled to match")
    ap.add_argument("--window", type=int, default=tr.TrainConfig.window,
                    help="training window (frames) over which the correlation term is taken")
    ap.add_argument("--velocity-weight", type=float, default=tr.TrainConfig.velocity_weight,
                    help="weight of a correlation term on the aperture's frame-to-frame change")
    ap.add_argument("--target-scale", choices=tr.TARGET_SCALES, default=tr.TrainConfig.target_scale,
                    help="'speaker': scale each training speaker's mouth motion to the corpus's "
                         "median spread (amplitude is left to the calibration maps)")
    ap.add_argument("--pose-clean", action="store_true",
                    help="train on targets less the part each clip's head pose explains")
    ap.add_argument("--n-code", type=int, default=tr.TrainConfig.n_code,
                    help="PCA components of the mouth the network predicts")
    ap.add_argument("--adversary-weight", type=float, default=tr.TrainConfig.adversary_weight,
                    help="weight of a speaker-adversarial term: the net pays where a probe reading "
                         "the training speaker from its states is sure")
    ap.add_argument("--phones", action="store_true",
                    help="add PocketSphinx phone tracks to the input (cross-validation runs only; "
                         "needs the [phones] extra: pip install -e '.[phones]')")
    ap.add_argument("--speaker-share", type=float, default=1.0,
                    help="learning curve: train on this share of each fold's speakers (seeded by "
                         "--speaker-seed; held-out clips are all still predicted; cross-validation "
                         "runs only)")
    ap.add_argument("--speaker-seed", type=int, default=0)
    args = ap.parse_args(argv)
    if not 0 < args.speaker_share <= 1:
        ap.error(f"--speaker-share must be in (0, 1], got {args.speaker_share}")
    torch.set_num_threads(args.threads)
    cfg = config_from(args)
    # Inputs only training makes (MotionModel reads AudioFeatures as they are) and learning-curve
    # subsets: never shipped.
    training_only = [flag for flag, on in (("--input-norm", cfg.input_norm != "none"),
                                           ("--phones", cfg.phones),
                                           ("--speaker-share", args.speaker_share < 1)) if on]
    if training_only and (args.members or args.offsets == "search"):
        raise SystemExit(f"{' and '.join(training_only)}: for cross-validation runs only; use "
                         "--members 0 and a saved --offsets table (MotionModel does not normalise "
                         "its input or compute phones, and ships trained on every speaker)")
    command = "python -m lipdub.motion.train " + " ".join(sys.argv[1:] if argv is None else argv)

    clips, ref, data_manifest, fold_of, folds = load_data(args.data, args.cache, args.folds_file,
                                                          args.augment_views)
    if cfg.phones:
        ds.add_phone_tracks(clips, args.cache / "clips")
    # Each clip (and each augmented view) from its own input frames only, train and held-out alike.
    fn.normalise_clips(clips, cfg.input_norm, cfg.input_norm_seconds, ds.FPS, cfg.input_norm_parts)
    all_folds = sorted(set(fold_of.values()))
    log(f"{len(clips)} clips, {len({c.speaker for c in clips})} speakers, "
        f"{sum(c.n for c in clips) / 25 / 60:.1f} min, folds {all_folds}")

    if args.merge_runs:
        merge_runs([args.cache / "runs" / name for name in args.merge_runs], args.cache / "runs" / args.run)
        log(f"run {args.run}: merged from {', '.join(args.merge_runs)}")
        return 0
    if args.derive_offsets:
        run, out = args.derive_offsets
        with np.load(args.cache / "runs" / run / "oof.npz") as z:
            table = of.offset_table(clips, dict(z))
        tmp = Path(out).with_name(Path(out).name + ".partial")
        tmp.write_text(json.dumps(table, indent=1))
        tmp.replace(out)
        log(f"offsets from run {run}: {sum(v['shifted'] for v in table.values())} clips shifted, "
            f"{len(of.excluded(table))} left out of training, {len(table)} of {len(clips)} clips")
        return 0
    offsets_path = args.cache / "offsets.json"
    if args.offsets == "search":
        base = tr.TrainConfig(steps=args.steps, threads=args.threads)
        # Trained on the development folds only: no offset (and so no training pair of any later
        # run) carries information from the fresh fold's clips.
        oof, shuf, _ = tr.cross_validate(clips, base, fold_of, all_folds, folds["dev_folds"],
                                         seed=args.seed, log=log)
        table = of.offset_table(clips, oof)
        save_run(args.cache / "runs" / "pass1", oof, shuf, {},
                 {"config": base.to_dict(), "test_folds": all_folds, "train_folds": folds["dev_folds"],
                  "offsets": None, "members": 1})
        tmp = offsets_path.with_name(offsets_path.name + ".partial")
        tmp.write_text(json.dumps(table, indent=1))
        tmp.replace(offsets_path)
        log(f"offsets: {sum(v['shifted'] for v in table.values())} clips shifted, "
            f"{len(of.excluded(table))} left out of training")
    elif args.offsets == "none":
        table = {}
    else:
        offsets_path = Path(args.offsets)
        table = json.loads(offsets_path.read_text())
    # Training targets only (held-out clips are scored on their own aperture, which this keeps).
    base = tr.pose_cleaned(clips) if cfg.pose_clean else clips
    train_clips = of.apply_offsets(base, table)
    skip = of.excluded(table)
    speed = speed_views(base, table, args.speed, args.cache / "clips")
    if args.speaker_share < 1:
        kept = fl.speaker_share(fold_of, args.speaker_share, args.speaker_seed)
        skip = skip | {c.name for c in clips if c.speaker not in kept}
        log(f"speaker share {args.speaker_share}: {len(kept)} of {len(set(fold_of))} speakers "
            "kept for training")
    if cfg.target_scale == "speaker":  # training targets only: held-out clips keep their own
        scaled = tr.speaker_scaled([*train_clips, *speed], lambda c: of.speech_mask_of(c.vad))
        train_clips, speed = scaled[:len(train_clips)], scaled[len(train_clips):]

    if args.cv != "none":
        test = {"dev": folds["dev_folds"], "fresh": [folds["fresh_fold"]], "all": all_folds}[args.cv]
        if args.cv_folds:  # a share of the folds, e.g. one process per core (then --merge-runs)
            test = [k for k in test if k in args.cv_folds]
        train_folds = folds["dev_folds"] if args.cv == "dev" else None
        # Held-out clips are predicted from their original (unshifted) audio.
        oof, shuf, nets = cross_validate_clean(clips, train_clips, cfg, fold_of, test, train_folds,
                                               args.seed, args.cv_members, skip, speed)
        save_run(args.cache / "runs" / args.run, oof, shuf, nets,
                 {"config": cfg.to_dict(), "test_folds": test, "train_folds": train_folds,
                  "offsets": str(offsets_path) if table else None, "members": args.cv_members,
                  "command": command,
                  # only when set, so full-data runs of any session still merge with each other
                  **({"speaker_share": [args.speaker_share, args.speaker_seed]}
                     if args.speaker_share < 1 else {})})
        log(f"run {args.run}: out-of-fold predictions for {len(oof)} clips saved")

    if args.members:
        # Delay and corpus map come from out-of-fold predictions: this run's, or pass 1's when
        # nothing was cross-validated here.
        default_run = args.run if args.cv != "none" or args.offsets != "search" else "pass1"
        cal_run = args.cache / "runs" / (args.calibration_run or default_run)
        if not (cal_run / "oof.npz").is_file():
            raise SystemExit(f"no out-of-fold predictions in {cal_run}: run with --cv dev (or "
                             "--offsets search), or name one with --calibration-run")
        with np.load(cal_run / "oof.npz") as z:
            cal_oof = dict(z)
        delay = int(np.round(mean_best_lag(clips, cal_oof)))
        amp = corpus_map(clips, cal_oof)
        used = [c for c in [*train_clips, *speed] if c.meta.get("base", c.name) not in skip]
        nets = [tr.fit(used, cfg, seed=args.seed * 1000 + j, log=log) for j in range(args.members)]
        manifest = model_manifest(clips, ref, cfg, data_manifest, table, members=args.members,
                                  seed=args.seed, delay=delay, amp_map=amp, command=command,
                                  extra={"folds_file": str(args.folds_file.name),
                                         "calibration_run": cal_run.name})
        export(nets, args.out, manifest)
        log(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB), delay {delay} frames")
    return 0


def speed_views(clips, table: dict, factors, cache: Path) -> list:
    """Training-only copies of every clip at each speed factor, offset-corrected as the clip is."""
    out = []
    for f in factors or ():
        for c in clips:
            row = table.get(c.name, {})
            out.append(ds.speed_clip(c, f, cache, row["lag"] if row.get("shifted") else 0))
    if out:
        log(f"speed views {list(factors)}: {len(out)} training clips added")
    return out


def cross_validate_clean(clips, train_clips, cfg, fold_of, test_folds, train_folds, seed, members,
                         skip, extra=()):
    """``training.cross_validate`` trained on offset-corrected clips (and ``extra``, training-only
    speed views), predicting original ones."""
    shifted = {c.name: c for c in train_clips}
    oof, shuf, nets = tr.cross_validate([shifted[c.name] for c in clips], cfg, fold_of, test_folds,
                                        train_folds, seed=seed, members=members, log=log,
                                        exclude_from_training=skip, extra_training=extra)
    by_name = {c.name: c for c in clips}
    for k, fold_nets in nets.items():
        for c in clips:
            if fold_of[c.speaker] == k and shifted[c.name] is not c:
                oof[c.name] = np.mean([tr.predict(n, by_name[c.name].x) for n in fold_nets], axis=0)
    return oof, shuf, nets


if __name__ == "__main__":
    raise SystemExit(main())
