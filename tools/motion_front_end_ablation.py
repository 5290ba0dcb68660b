"""Train the motion model on another Whisper front end (an ablation, not the shipped path).

    python tools/motion_front_end_ablation.py --window 3 --hop 1.5 --fade 0.25 -- --cv dev --members 0 --run w3 ...
    python tools/motion_front_end_ablation.py --layers 1 -- ...   # block 2 alone (see whisper.LAYERS)

Everything after ``--`` goes to ``python -m lipdub.motion.train``. The features of that window length
are cached in ``cache/motion_w<window>/clips`` (``..._h<hop>_f<fade>`` unless hop = window / 2
and fade 0.5; ``..._L<layers>`` for other encoder layers) (the slow MediaPipe tracks are linked from
``cache/motion/clips``, which must exist), so the shipped front end's cache is never touched. The
run's out-of-fold predictions land in ``cache/motion_w<window>/runs/<run>`` and are scored by
``benchmarks/motion_eval.py --run-dir cache/motion_w<window>/runs/<run>``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--window", type=float, default=6.0, help="seconds of audio per encoder window")
    ap.add_argument("--hop", type=float, default=3.0, help="largest step between window starts (s)")
    ap.add_argument("--layers", type=int, nargs="+", help="encoder layers side by side (whisper.LAYERS)")
    ap.add_argument("--fade", type=float, default=None, help="cross-fade half-width (s)")
    ap.add_argument("train_args", nargs=argparse.REMAINDER)
    args = ap.parse_args(argv)

    from lipdub.audio import features, whisper
    from lipdub.motion import dataset as ds
    from lipdub.motion import representation as rep
    from lipdub.motion import train

    if args.layers:  # read at call time; the model's input width follows
        if len(set(args.layers)) != len(args.layers) or not all(0 <= i <= 4 for i in args.layers):
            ap.error("--layers: distinct indices in 0..4 (0-3 after blocks 1-4, 4 the output)")
        whisper.LAYERS = tuple(args.layers)
        whisper.FEATURE_DIM = features.FEATURE_DIM = whisper.STATE_DIM * len(args.layers)
        rep.INPUT_DIM += whisper.FEATURE_DIM - rep.WHISPER_DIM
        rep.WHISPER_DIM = whisper.FEATURE_DIM

    if args.fade is not None:
        whisper.FADE_SECONDS = args.fade  # read at call time by the encoder and window_weights
    ds._ENCODER[:] = [whisper.WhisperEncoder(threads=1, window_seconds=args.window, hop_seconds=args.hop)]
    fade = whisper.FADE_SECONDS
    cache = ROOT / "cache" / (f"motion_w{args.window:g}" + ("" if args.hop == args.window / 2 and fade == 0.5
                                                              else f"_h{args.hop:g}_f{fade:g}")
                    + (f"_L{'_'.join(map(str, args.layers))}" if args.layers else ""))
    clips = cache / "clips"
    clips.mkdir(parents=True, exist_ok=True)
    for track in (ROOT / "cache" / "motion" / "clips").glob("*.track.npz"):
        link = clips / track.name
        if not link.exists():
            link.symlink_to(track.resolve())
    rest = [a for a in args.train_args if a != "--"]
    return train.main(["--cache", str(cache), *rest])


if __name__ == "__main__":
    sys.exit(main())
