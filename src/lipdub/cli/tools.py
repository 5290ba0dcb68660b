"""`lipdub compare` (two videos, pixels and mouth motion) and `lipdub doctor`."""

from __future__ import annotations

import argparse
import json
import sys


def _cmd_compare(args: argparse.Namespace) -> int:
    from lipdub.metrics import compare_videos, format_report

    result = compare_videos(args.a, args.b, fps=args.fps, mouth=not args.no_mouth,
                            side_by_side=args.side_by_side, plot=args.plot)
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(format_report(result))
    return 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    from lipdub.doctor import format_checks, run_checks

    checks = run_checks()
    print(format_checks(checks))
    return 0 if all(c.ok for c in checks) else 1


def add_parsers(sub) -> None:
    p = sub.add_parser("compare", help="compare two videos (pixels and mouth motion)",
                       description="PSNR, SSIM, pixel differences and mouth-aperture agreement of A and B.")
    p.add_argument("a", help="first video (the reference)")
    p.add_argument("b", help="second video")
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    p.add_argument("--fps", type=float, default=25.0, help="rate both are sampled at (default 25)")
    p.add_argument("--no-mouth", action="store_true", help="skip face tracking (pixel metrics only)")
    p.add_argument("--side-by-side", metavar="OUT.mp4", default=None, help="write A|B side by side")
    p.add_argument("--plot", metavar="P.png", default=None, help="plot both mouth-aperture curves")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("doctor", help="check the installation and bundled models",
                       description="Report versions of ffmpeg, mediapipe, onnxruntime and torch, check "
                                   "that the bundled models load, and say how to fix what is missing.")
    p.set_defaults(func=_cmd_doctor)
