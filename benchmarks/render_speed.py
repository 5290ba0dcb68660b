"""Per-frame render + paste cost in ms a frame, without ffmpeg, features or the motion model (JSON).

On a template built by ``generate_speed.py`` (default the 1280x720 close-up, face ~700 px, whose
mouth box reaches the renderer's largest working side), network-free as ``generate`` runs it:
chunks of 32 template frames through ``Renderer.render_chunk`` and ``composite.paste``, as
``pipeline.draw_mouths`` does. Target
mouths are the motion model's for 30 s of the benchmark speech over the template walk, as
``generate`` makes them (``--targets other``, or without an installed motion model: other frames'
mouths moved onto each frame); the same ones every run, so outputs can be compared across code
versions (the targets are stored beside the template on the first run and reused, so a new
motion model does not change them):

- ``--save FILE``: store the pasted boxes (uint8) of every frame;
- ``--compare FILE``: the largest and mean grey-level difference from a stored run, and the share
  of pixels differing by more than 2 levels.

Stages are timed inclusively by wrapping the functions ``render.runtime`` calls (``crop`` of the
template, ``masks``, the mouth ``warp``, ``join_jaw`` with its jaw warp and colour match) and
``paste``; ``render_chunk_ms`` and ``paste_ms`` are the totals, ``render_paste_ms`` the sum.
``render_paste_cpu_ms``: the process's CPU time a frame over the same pass (worker threads
included: with ``--free-threads``, OpenCV's and OpenBLAS's idle workers spinning show there). Best of ``--repeat`` passes per stage (the machine is shared; the minimum is the least
disturbed).

    python benchmarks/render_speed.py [--template closeup720] [--frames 256] [--repeat 3] [--free-threads]
                                      [--save F.npz | --compare F.npz]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
CHUNK = 32  # GenerateOptions().chunk: frames per render_chunk call


def motion_targets(avatar, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(template frame per output frame (n,), target landmarks (n, 478, 3)) from the motion model
    on ``generate_speed``'s 30 s speech, as ``generate`` draws them."""
    import generate_speed

    from lipdub.pipeline import GenerateOptions, _features, output_order, target_chunks

    opts = GenerateOptions()
    feats = _features(str(generate_speed.build_audio(30.0)), avatar.fps, opts)
    n = min(n, feats.n_frames)
    order = output_order(feats.n_frames, avatar, opts, feats.fps)
    idx, lms = [], []
    for i, lm in target_chunks(avatar, feats, feats.n_frames, opts, order=order):
        idx.append(i)
        lms.append(lm)
        if sum(map(len, idx)) >= n:
            break
    return np.concatenate(idx)[:n], np.concatenate(lms)[:n].astype(np.float32)


def target_mouths(landmarks: np.ndarray, shift: int = 37) -> np.ndarray:
    """(N, 478, 3): frame i's landmarks with the mouth region (every point) of frame i+shift,
    moved so its centroid sits on frame i's: another real mouth shape at this frame's place."""
    n = len(landmarks)
    other = landmarks[(np.arange(n) + shift) % n].astype(np.float32)
    centre = landmarks[:, :, :2].mean(1, keepdims=True) - other[:, :, :2].mean(1, keepdims=True)
    out = other.copy()
    out[:, :, :2] += centre
    return out


class StageTimer:
    """Wraps module functions so each call's wall time is added to its stage (inclusive)."""

    def __init__(self):
        self.ms = defaultdict(float)
        self._undo = []

    def wrap(self, module, name: str, stage: str) -> None:
        fn = getattr(module, name)

        def timed(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.ms[stage] += (time.perf_counter() - t) * 1e3

        setattr(module, name, timed)
        self._undo.append((module, name, fn))

    def restore(self) -> None:
        for module, name, fn in reversed(self._undo):
            setattr(module, name, fn)
        self._undo.clear()


def one_pass(renderer, avatar, frames, order, targets, keep: list | None):
    from lipdub.composite import paste
    from lipdub.render.condition import int_box

    n = len(order)
    render_ms = paste_ms = cpu_ms = 0.0
    renderer.reset()
    for s in range(0, n, CHUNK):
        idx = order[s:s + CHUNK]
        batch = [frames[i].copy() for i in idx]
        tgt = targets[s:s + CHUNK]
        cpu, t = time.process_time(), time.perf_counter()
        out = renderer.render_chunk(batch, avatar.boxes[idx], avatar.landmarks[idx], tgt)
        t1 = time.perf_counter()
        for j, frame in enumerate(batch):
            paste(frame, out.crops[j], out.alphas[j], avatar.boxes[idx[j]], out.templates[j], inplace=True)
        paste_ms += (time.perf_counter() - t1) * 1e3
        cpu_ms += (time.process_time() - cpu) * 1e3
        render_ms += (t1 - t) * 1e3
        if keep is not None:
            for j, frame in enumerate(batch):
                x0, y0, x1, y1 = int_box(avatar.boxes[idx[j]])
                h, w = frame.shape[:2]
                keep.append(frame[max(0, y0):min(h, y1), max(0, x0):min(w, x1)].copy())
    return render_ms, paste_ms, cpu_ms


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--template", default="closeup720", help="a generate_speed.py template")
    ap.add_argument("--frames", type=int, default=256, help="output frames per pass")
    ap.add_argument("--targets", default="motion", choices=["motion", "other"],
                    help="target mouths: the motion model's, or other frames' mouths")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--free-threads", action="store_true",
                    help="leave OpenCV and BLAS at their own thread counts (default: one each, as "
                         "generate runs them: lipdub.compute_threads)")
    ap.add_argument("--save", default=None, help="store the pasted boxes here (.npz)")
    ap.add_argument("--compare", default=None, help="compare the pasted boxes with a stored run")
    args = ap.parse_args(argv)

    import generate_speed

    if not generate_speed.TEMPLATES[args.template].exists():
        print(json.dumps({"skipped": f"not present: {generate_speed.TEMPLATES[args.template]}"}))
        return 0
    import cv2

    from lipdub.avatar import Avatar
    from lipdub.render import runtime
    from lipdub.render.reference import ReferenceBank
    from lipdub.render.runtime import Renderer

    folder = generate_speed.build_template(args.template)
    avatar = Avatar.load(folder)
    renderer = Renderer.load(avatar, use_network=False)
    from lipdub.motion.model import ONNX_PATH

    stored = generate_speed.WORK / f"render_speed_targets_{args.template}.npz"
    if args.targets == "motion" and stored.exists():  # fixed across runs (and motion models)
        with np.load(stored) as saved:
            order, targets = saved["order"][:args.frames], saved["targets"][:args.frames]
    elif args.targets == "motion" and ONNX_PATH.exists():
        order, targets = motion_targets(avatar, max(args.frames, 750))
        np.savez(stored, order=order, targets=targets)
        order, targets = order[:args.frames], targets[:args.frames]
    else:
        args.targets = "other"
        order = np.arange(args.frames) % avatar.n_frames
        targets = target_mouths(avatar.landmarks)[order]
    used = sorted(set(order.tolist()))
    frames = dict(zip(used, avatar.iter_frames(used)))

    from contextlib import nullcontext

    from lipdub.compute_threads import single_compute_threads

    with nullcontext() if args.free_threads else single_compute_threads():
        report = measure(renderer, avatar, frames, order, targets, args, ReferenceBank, runtime, cv2)
    print(json.dumps(report, indent=1))
    return 0


def measure(renderer, avatar, frames, order, targets, args, ReferenceBank, runtime, cv2) -> dict:
    n = len(order)
    kept: list = []
    one_pass(renderer, avatar, frames, order, targets, kept)  # warm-up, and the outputs
    best = defaultdict(lambda: float("inf"))
    for _ in range(args.repeat):
        timer = StageTimer()
        for name, stage in (("crop", "crop"), ("masks", "masks"), ("warp", "warp_mouth"),
                            ("join_jaw", "join_jaw"), ("paste_roi", "paste_roi")):
            timer.wrap(runtime, name, stage)
        timer.wrap(ReferenceBank, "sequence", "retrieval")
        try:
            render_ms, paste_ms, _ = one_pass(renderer, avatar, frames, order, targets, None)
        finally:
            timer.restore()
        stages = dict(timer.ms, render_chunk=render_ms, paste=paste_ms)
        # Untimed pass for the totals (the wrappers add a little of their own), with the CPU
        # time of the whole process (OpenCV's and BLAS's worker threads count: on a machine
        # whose cores the encoder also needs, that is what generate pays).
        render_ms, paste_ms, cpu_ms = one_pass(renderer, avatar, frames, order, targets, None)
        stages.update(render_chunk_total=render_ms, paste_total=paste_ms, cpu=cpu_ms)
        for k, v in stages.items():
            best[k] = min(best[k], v / n)
    report = {
        "template": args.template, "targets": args.targets, "frames": n, "repeat": args.repeat,
        "box_px": int(np.median(avatar.boxes[order, 2] - avatar.boxes[order, 0])),
        "load_average": list(np.round(os.getloadavg(), 2)),
        "ms_per_frame": {k: round(best[k], 3) for k in
                         ("retrieval", "crop", "masks", "paste_roi", "warp_mouth", "join_jaw", "render_chunk")
                         + ("paste",)},
        "render_chunk_ms": round(best["render_chunk_total"], 3),
        "paste_ms": round(best["paste_total"], 3),
    }
    report["render_paste_ms"] = round(report["render_chunk_ms"] + report["paste_ms"], 3)
    report["render_paste_cpu_ms"] = round(best["cpu"], 3)
    report["cv_threads"] = cv2.getNumThreads()
    report["free_threads"] = bool(args.free_threads)
    if args.save:
        np.savez_compressed(args.save, *kept)
    if args.compare:
        ref = np.load(args.compare)
        diffs = [np.abs(ref[f"arr_{i}"].astype(np.int16) - k.astype(np.int16)) for i, k in enumerate(kept)]
        allv = np.concatenate([d.ravel() for d in diffs])
        report["compare"] = {"max_grey_levels": int(allv.max()), "mean_grey_levels": round(float(allv.mean()), 4),
                             "share_above_2": round(float((allv > 2).mean()), 6)}
    return report


if __name__ == "__main__":
    sys.exit(main())
