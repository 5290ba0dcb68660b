"""Full-pipeline sync benchmark on speakers the motion model never trained on (JSON on stdout).

    python benchmarks/sync_eval.py --run v3 [--avatars data/mimictalk_German_20s.mp4 ...]

For each avatar clip A (fold k of the fixed fold file) the *fold-k model* of a cross-validation
run (trained without fold k; its output delay and corpus amplitude map measured on the other
folds only) is exported to ONNX and used through ``LIPDUB_MOTION_MODEL``. Then:

- the first ``--seconds`` of A are cut at 75 %; ``lipdub prepare`` makes the avatar from the first
  part (its own amplitude map is fitted there, as for any user footage);
- **self**: A's held-out last 25 % of speech drives the avatar; the written MP4 is re-tracked
  (MediaPipe) and its mouth aperture (inner gap / width) scored against A's real held-out mouth;
- **cross**: speech of up to ``--drivers`` other fold-k speakers B drives the avatar; the MP4 is
  scored against B's own real mouth.

Scores: aperture r at lag 0, the best lag within ±2 (positive: the real mouth moves later),
amplitude ratio (generated / real, mean and 90th percentile, during speech by voice activity)
and lip-closure recall; ``r0_offsets``: r with the driving clip re-paired by its own A/V offset
(``offset_frames``, from the run's offsets table, found by first-pass models that never saw that
clip's fold; applied only where the table marks it ``shifted``, as in motion_eval.py);
``r0_target``: r at lag 0 of the motion stage's target landmarks (gap / width on the template,
before rendering) against the real mouth, and ``r_render``: r of that target against the written
video, re-tracked (what the render and the re-tracking keep of it). The
renderer is the bank's warped real mouth (``use_network=False``: no per-avatar U-Net training
here; the U-Net corrects texture, not geometry); ``--train-minutes`` trains it instead;
``--no-voice-match`` keeps the avatar's own-voice map (no re-keying to the driving voice). With
``--dub-audio`` the ``--dub-for`` avatars are also dubbed with that file (e.g.
``musetalk_eng.wav``) and their mouth range reported next to the avatar's own. Skips without
../shared/data. Scratch under cache/bench/sync_eval (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DEFAULT_AVATARS = ["data/mimictalk_German_20s.mp4", "data/infinitetalk_ref_video.mp4",
                   "extra2/dfrf_cnn2_25fps.mp4", "data/latentsync_demo3_video.mp4"]
FPS = 25.0
OPEN = 0.2   # gap/width at which a mouth counts as clearly open (the measure)


def ffmpeg(*args) -> None:
    from lipdub.video import ffmpeg_exe

    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", *map(str, args)], check=True)


def cut(src: Path, out: Path, start: float, dur: float, audio_only: bool = False) -> Path:
    if not out.exists():
        if audio_only:
            ffmpeg("-i", src, "-ss", f"{start:.3f}", "-t", f"{dur:.3f}", "-vn", "-ac", "1", "-ar", "16000", out)
        else:
            ffmpeg("-i", src, "-ss", f"{start:.3f}", "-t", f"{dur:.3f}", "-r", "25", "-c:v", "libx264",
                   "-crf", "12", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-c:a", "aac", out)
    return out


def video_aperture(path: Path) -> np.ndarray:
    """Pixel aperture (gap / width) per 25-fps frame of a video, NaN where no face."""
    from lipdub.metrics import aperture_series
    from lipdub.motion.dataset import track_clip

    return aperture_series(track_clip(path, points=None))


def speech_of(wav: Path, n: int) -> np.ndarray:
    from lipdub.audio import load_audio, voice_activity
    from lipdub.motion.offsets import speech_mask_of

    return speech_mask_of(voice_activity(load_audio(wav), FPS, n))


def mouth_range(aperture: np.ndarray, speech: np.ndarray) -> dict:
    """Mean, 90th percentile, share clearly open (``OPEN``) and share closed (at most 0.1 of the
    90th percentile, as closure recall counts closures) of a video's aperture during speech."""
    g = aperture[speech & np.isfinite(aperture)]
    p90 = float(np.percentile(g, 90))
    return {"mean": round(float(g.mean()), 3), "p90": round(p90, 3),
            "open_share": round(float((g >= OPEN).mean()), 3),
            "closed_share": round(float((g <= 0.1 * p90).mean()), 3)}


def target_aperture(avatar, wav: Path, opts: dict) -> np.ndarray:
    """Gap / width of the motion stage's target landmarks on the template frames, per output
    frame: what the renderer is asked to draw, before it draws it."""
    from lipdub.audio import extract_features, load_audio
    from lipdub.face.geometry import mouth_aperture
    from lipdub.pipeline import GenerateOptions, target_chunks, template_for

    options = GenerateOptions(**opts)
    audio = load_audio(wav)
    n = round(len(audio) / 16000 * FPS)
    template = template_for(avatar, options)
    chunks = target_chunks(template, extract_features(audio, FPS), n, options)
    return np.concatenate([np.asarray(mouth_aperture(lms), np.float32) for _, lms in chunks])


def score(gen: np.ndarray, real: np.ndarray, speech: np.ndarray, offset: int = 0,
          target: np.ndarray | None = None) -> dict:
    """``target``: the motion stage's aperture (``target_aperture``), scored too, to tell the
    motion's loss from the render's."""
    from lipdub.motion import evaluation as ev

    n = min(len(gen), len(real), len(speech))
    g, r, s = gen[:n], real[:n], speech[:n]
    # Re-paired as motion_eval.py does (offset > 0: the real mouth runs later), before dropping
    # untracked frames so that the shift is in frames of the clip.
    a, b = ev.paired_at(g, r, offset)
    fin = np.isfinite(a) & np.isfinite(b)
    r0_offsets = ev.pearson(a[fin], b[fin])
    ok = np.isfinite(g) & np.isfinite(r)
    stages = {}
    if target is not None:
        t = np.full(n, np.nan, np.float32)
        t[:min(n, len(target))] = target[:n]
        both = ok & np.isfinite(t)
        stages = {"r0_target": ev.pearson(t[both], r[both]), "r_render": ev.pearson(t[both], g[both])}
    g, r, s = g[ok], r[ok], s[ok]
    lg = ev.lagged(g, r)
    amp = ev.amplitude_ratio(g, r, s)
    cl = ev.closure_recall(g, r, s)
    rd = lambda v: None if v is None or not np.isfinite(v) else round(float(v), 3)  # noqa: E731
    return {"frames": int(n), "r0": rd(lg["r0"]), "best_lag": lg["best_lag"], "r_best": rd(lg["r_best"]),
            "offset_frames": int(offset), "r0_offsets": rd(r0_offsets),
            "amp_mean": rd(amp["mean"]), "amp_p90": rd(amp["p90"]), "closure_recall": rd(cl["recall"]),
            "gen_mean": rd(np.mean(g[s])) if s.any() else None,
            "real_mean": rd(np.mean(r[s])) if s.any() else None,
            "gen_open_frames": int((g[s] >= OPEN).sum()), "real_open_frames": int((r[s] >= OPEN).sum()),
            **{k: rd(v) for k, v in stages.items()}}


def _rel(path: Path) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def export_fold_model(run_dir: Path, k: int, out: Path, data) -> Path:
    """ONNX + manifest of run ``run_dir``'s fold-``k`` nets; delay and map from the other folds."""
    from lipdub.motion import training as tr
    from lipdub.motion.train import corpus_map, export, load_fold_nets, mean_best_lag, model_manifest

    if out.exists():
        return out
    clips, ref, manifest_rows, fold_of, _ = data
    meta = json.loads((run_dir / "meta.json").read_text())
    cfg = tr.TrainConfig(**{key: tuple(v) if isinstance(v, list) else v for key, v in meta["config"].items()})
    nets = load_fold_nets(run_dir, cfg)[k]
    with np.load(run_dir / "oof.npz") as z:
        oof = dict(z)
    others = [c for c in clips if fold_of[c.speaker] != k]
    delay = int(np.round(mean_best_lag(others, oof)))
    if "front_end" not in meta:  # runs made before the front end was recorded: unknown features
        raise SystemExit(f"{run_dir} does not say which audio front end its nets were trained on")
    manifest = model_manifest(others, ref, cfg, [dict(r) for r in manifest_rows], {}, members=len(nets),
                              seed=0, delay=delay, amp_map=corpus_map(others, oof),
                              command=f"fold {k} of run {run_dir.name}", extra={"held_out_fold": k},
                              front=meta["front_end"])
    export(nets, out, manifest)
    return out


def render_ablation(no_pose_part: bool, opening_weight: float | None,
                    whole_frame_gain: bool = False) -> dict:
    """Switch render pieces off for this process (an ablation, never the product's setting)."""
    import importlib

    from lipdub.render import reference

    # the module: ``lipdub.motion.calibrate`` as an attribute is the re-exported function
    calibration = importlib.import_module("lipdub.motion.calibrate")
    if no_pose_part:
        calibration.pose_deformation = lambda points, mouth, *a, **k: np.zeros(
            (len(mouth),) + np.shape(mouth)[1:], np.float32)
    if opening_weight is not None:
        reference.OPENING_WEIGHT = float(opening_weight)
    if whole_frame_gain:  # the amplitude map's factor on the whole frame, as before session 8
        from dataclasses import replace

        inner = calibration.calibrate
        calibration.calibrate = lambda *a, **k: replace(inner(*a, **k), opening=None)
    return {"pose_part": not no_pose_part, "opening_weight": reference.OPENING_WEIGHT,
            "opening_pattern": not whole_frame_gain}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", default="v3", help="cross-validation run with fold nets")
    ap.add_argument("--cache", type=Path, default=ROOT / "cache" / "motion")
    ap.add_argument("--work", type=Path, default=ROOT / "cache" / "bench" / "sync_eval")
    ap.add_argument("--avatars", nargs="+", default=DEFAULT_AVATARS)
    ap.add_argument("--drivers", type=int, default=3, help="other held-out speakers per avatar")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of avatar footage used (75 %% prepared)")
    ap.add_argument("--train-minutes", type=float, default=0.0, help="train the U-Net this long (0: warp only)")
    ap.add_argument("--dub-audio", type=Path, help="also dub the --dub-for avatars with this audio")
    ap.add_argument("--dub-for", nargs="*", default=["data/mimictalk_German_20s.mp4"])
    ap.add_argument("--no-voice-match", dest="match_voice", action="store_false",
                    help="generate with the avatar's map as fitted on its own voice (GenerateOptions.match_voice=False)")
    # Render ablations (what the session-7 and -8 render choices were measured against):
    ap.add_argument("--no-pose-part", action="store_true",
                    help="put the neutral jaw line on every template frame (no lipdub.motion.pose part)")
    ap.add_argument("--opening-weight", type=float,
                    help="retrieval weight of the inner lips' opening (reference.OPENING_WEIGHT)")
    ap.add_argument("--whole-frame-gain", action="store_true",
                    help="scale each frame's whole mouth by the amplitude map's factor at its aperture "
                         "(no opening pattern: calibrate.apply before session 8)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    render = render_ablation(args.no_pose_part, args.opening_weight, args.whole_frame_gain)
    if not (SHARED / "data").is_dir():
        print(json.dumps({"skipped": f"{SHARED / 'data'} not present (development machines only)"}))
        return 0
    import lipdub
    from lipdub.motion.train import DEFAULT_DATA, load_data

    data = load_data(DEFAULT_DATA, args.cache, ROOT / "benchmarks" / "results" / "motion_folds.json")
    clips, _, _, fold_of, folds = data
    by_file = {f"{k}": v for k, v in folds["files"].items()}
    clip_of = {c.name: c for c in clips}
    run_dir = args.cache / "runs" / args.run
    from motion_eval import clip_lags  # the same table, read the same way

    offsets_path, offset_of = clip_lags(run_dir)
    offsets_path = offsets_path and _rel(offsets_path)
    results = []
    for rel in args.avatars:
        info = by_file[rel]
        k, name = info["fold"], Path(rel).name
        src = SHARED / rel
        work = args.work / Path(rel).stem
        work.mkdir(parents=True, exist_ok=True)
        # keyed by run: an exported fold model is reused only for the run it came from
        model_path = export_fold_model(run_dir, k, args.work / "models" / run_dir.name / f"fold{k}" / "motion.onnx",
                                       data)
        os.environ["LIPDUB_MOTION_MODEL"] = str(model_path)
        n_total = clip_of[name].n if name in clip_of else int(args.seconds * FPS)
        dur = min(args.seconds, n_total / FPS)
        split = round(0.75 * dur * FPS) / FPS
        train_mp4 = cut(src, work / "avatar.mp4", 0.0, split)
        test_mp4 = cut(src, work / "heldout.mp4", split, dur - split)
        test_wav = cut(src, work / "heldout.wav", split, dur - split, audio_only=True)
        folder = work / "avatar"
        avatar = (lipdub.Avatar.load(folder) if (folder / "manifest.json").exists()
                  else lipdub.Avatar.prepare(train_mp4, folder))
        if args.train_minutes and not avatar.trained:
            avatar.train(minutes=args.train_minutes)
        opts = dict(use_network=bool(args.train_minutes), match_voice=args.match_voice)
        entry = {"avatar": rel, "speaker": info["speaker"], "fold": k, "model": _rel(model_path),
                 "avatar_seconds": round(split, 2)}
        own = video_aperture(train_mp4)
        entry["own_range"] = {"mean": round(float(np.nanmean(own)), 3),
                              "p90": round(float(np.nanpercentile(own, 90)), 3)}
        # The same measures as the dub's below (during speech): the fair comparison.
        entry["own_speech"] = mouth_range(own, speech_of(train_mp4, len(own)))
        out = lipdub.generate(avatar, test_wav, work / "self.mp4", **opts)
        # The held-out piece is A's own tail, its audio and video cut at the same time from the
        # same file: A's offset applies to it as to the whole clip.
        entry["self"] = score(video_aperture(Path(out)), video_aperture(test_mp4),
                              speech_of(test_wav, int(round((dur - split) * FPS))), offset_of.get(name, 0),
                              target_aperture(avatar, test_wav, opts))
        cands = sorted((c for c in clips if fold_of[c.speaker] == k and c.speaker != info["speaker"]
                        and c.n >= 125 and c.tracked >= 0.99), key=lambda c: -c.n)
        seen, drivers = set(), []
        for c in cands:
            if c.speaker not in seen:
                seen.add(c.speaker)
                drivers.append(c)
        entry["cross"] = []
        for c in drivers[:args.drivers]:
            path = next(p for p in (SHARED / d / c.name for d in ("data", "extra", "extra2")) if p.exists())
            wav = cut(path, work / f"drv_{Path(c.name).stem}.wav", 0.0, min(20.0, c.n / FPS), audio_only=True)
            real = video_aperture(path)[:int(min(20.0, c.n / FPS) * FPS)]
            out = lipdub.generate(avatar, wav, work / f"cross_{Path(c.name).stem}.mp4", **opts)
            row = score(video_aperture(Path(out)), real, speech_of(wav, len(real)), offset_of.get(c.name, 0),
                        target_aperture(avatar, wav, opts))
            entry["cross"].append({"driver": c.name, "speaker": c.speaker, **row})
        if args.dub_audio and rel in args.dub_for:
            out = lipdub.generate(avatar, args.dub_audio, work / f"dub_{args.dub_audio.stem}.mp4", **opts)
            gen = video_aperture(Path(out))
            entry["dub"] = {"audio": args.dub_audio.name, "video": _rel(Path(out)),
                            **mouth_range(gen, speech_of(args.dub_audio, len(gen)))}
        results.append(entry)
        print(json.dumps(entry), file=sys.stderr, flush=True)
    cross = [r for e in results for r in e["cross"]]
    selfs = [e["self"] for e in results]
    mean = lambda rows, k: round(float(np.mean([r[k] for r in rows if r[k] is not None])), 3)  # noqa: E731
    summary = {"avatars": len(results), "cross_pairs": len(cross),
               "cross_r0": mean(cross, "r0"), "cross_r0_offsets": mean(cross, "r0_offsets"),
               "cross_r_best": mean(cross, "r_best"),
               "cross_best_lag": mean(cross, "best_lag"), "cross_amp_mean": mean(cross, "amp_mean"),
               "cross_closure_recall": mean(cross, "closure_recall"),
               "cross_r0_target": mean(cross, "r0_target"), "cross_r_render": mean(cross, "r_render"),
               "self_r0": mean(selfs, "r0"), "self_r0_offsets": mean(selfs, "r0_offsets"),
               "self_amp_mean": mean(selfs, "amp_mean"),
               "self_amp_p90": mean(selfs, "amp_p90"), "self_best_lag": mean(selfs, "best_lag"),
               "self_closure_recall": mean(selfs, "closure_recall"),
               "self_r0_target": mean(selfs, "r0_target"), "self_r_render": mean(selfs, "r_render"),
               "renderer": "U-Net" if args.train_minutes else "warped real mouth (bank, no U-Net)",
               "match_voice": args.match_voice, "offsets": offsets_path,
               "render": render}
    report = {"summary": summary, "avatars": results}
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
