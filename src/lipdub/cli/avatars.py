"""`lipdub prepare`, `lipdub train` (optional U-Net refinement) and `lipdub export`."""

from __future__ import annotations

import argparse

from lipdub.cli.options import face_choice
from lipdub.errors import LipdubError


def _cmd_prepare(args: argparse.Namespace) -> int:
    from lipdub.avatar import PrepareOptions, prepare

    try:
        index, point = (args.face if isinstance(args.face, tuple) else (args.face, None))
        options = PrepareOptions(fps=args.fps, smooth=args.smooth, face_index=index,
                                 face_point=point, max_size=args.max_size)
    except ValueError as exc:
        raise LipdubError(f"invalid option: {exc}") from None
    from lipdub.photo.prepare import PhotoOptions

    photo = PhotoOptions(seconds=args.idle_seconds, blink=not args.no_blink,
                         head_motion=args.head_motion, breathing=args.breathing)
    avatar = prepare(args.input, args.output, options, overwrite=args.overwrite, photo=photo)
    m = avatar.manifest
    print(f"prepared {avatar.path}: {avatar.n_frames} frames {avatar.width}x{avatar.height} "
          f"at {avatar.fps:g} fps in {m['prepare_seconds']:.1f} s ({m['prepare_fps']:.1f} frames/s)")
    if "shots" in m:
        print(f"  {m['shots']} shot(s), {m['people']} person(s); dubbing person {m['dubbed_person']} "
              f"in {m['frames_dubbed']} frames, the other {avatar.n_frames - m['frames_dubbed']} "
              "pass through untouched")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from lipdub.avatar import Avatar
    from lipdub.render.train import TrainOptions, train_renderer

    try:
        options = TrainOptions(minutes=args.minutes, epochs=args.epochs, size=args.size,
                               seed=args.seed, device=args.device, resume=args.resume)
    except ValueError as exc:
        raise LipdubError(f"invalid option: {exc}") from None
    onnx_path = train_renderer(Avatar.load(args.avatar), options)
    print(f"trained renderer: {onnx_path}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from lipdub.render.train import export_renderer

    print(f"exported and validated: {export_renderer(args.avatar)}")
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("prepare", help="prepare an avatar from a video or photo",
                       description="Track the face in every frame of INPUT and store an avatar "
                                   "(frames, landmarks, crops, audio features) in AVATAR_DIR.")
    p.add_argument("input", help="video or photo of one person")
    p.add_argument("-o", "--output", required=True, metavar="AVATAR_DIR", help="avatar folder to write")
    p.add_argument("--fps", type=float, default=25.0, help="frame rate of the avatar (default 25)")
    p.add_argument("--smooth", type=int, default=5,
                   help="landmark smoothing window in frames, centred; 1 = off (default 5)")
    p.add_argument("--face", type=face_choice, default=None, metavar="N|X,Y",
                   help="the person to dub: the N-th face from the left (0-based), or the face at "
                        "X,Y (fractions of the frame, e.g. 0.7,0.4); default: the largest. Frames "
                        "without that person's face pass through untouched")
    p.add_argument("--max-size", type=int, default=None, metavar="PX",
                   help="downscale so the longer side is at most PX")
    p.add_argument("--overwrite", action="store_true", help="replace an existing avatar folder")
    photo = p.add_argument_group("photo input", "a photo becomes a looping idle-motion template")
    photo.add_argument("--idle-seconds", type=float, default=10.0, metavar="S",
                       help="length of the idle template (default 10; 0 = one still frame)")
    photo.add_argument("--no-blink", action="store_true", help="no blinks")
    photo.add_argument("--head-motion", type=float, default=1.0, metavar="X",
                       help="scale of the slow head motion (default 1; 0 = off)")
    photo.add_argument("--breathing", type=float, default=1.0, metavar="X",
                       help="scale of the shoulders' breathing motion (default 1; 0 = off)")
    p.set_defaults(func=_cmd_prepare)

    p = sub.add_parser("train", help="optional: train an avatar's U-Net mouth refinement",
                       description="Optional refinement: train a small U-Net on the avatar's own "
                                   "frames to correct the warped real mouth, and write a validated "
                                   "ONNX model into AVATAR_DIR (generate then uses it). Without it "
                                   "generate works at once from the mouth bank made by prepare.")
    p.add_argument("avatar", metavar="AVATAR_DIR", help="a folder made by `lipdub prepare`")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, default=None, help="training time budget (default 15)")
    budget.add_argument("--epochs", type=float, default=None, help="passes over the frames instead")
    p.add_argument("--size", type=int, default=128, help="crop side in pixels (default 128; up to 320)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("export", help="re-export and validate an avatar's ONNX renderer",
                       description="Export AVATAR_DIR's trained renderer to ONNX again and check it "
                                   "against PyTorch on real crops (PSNR >= 40 dB).")
    p.add_argument("avatar", metavar="AVATAR_DIR", help="a trained avatar folder")
    p.set_defaults(func=_cmd_export)
