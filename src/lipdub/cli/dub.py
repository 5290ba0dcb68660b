"""`lipdub generate`, `lipdub batch` and `lipdub demo`."""

from __future__ import annotations

import argparse

from lipdub.cli.options import add_generate_options, generate_kwargs
from lipdub.errors import LipdubError


def _cmd_generate(args: argparse.Namespace) -> int:
    from lipdub.pipeline import GenerateOptions, generate

    try:
        options = GenerateOptions(**generate_kwargs(args))
    except ValueError as exc:
        raise LipdubError(f"invalid option: {exc}") from None
    out = generate(args.avatar, args.audio, args.output, options)
    print(f"wrote {out}")
    return 0


def _cmd_batch(args: argparse.Namespace) -> int:
    from lipdub.batch import items_from_dir, load_manifest, run_batch, run_batch_broker
    from lipdub.pipeline import GenerateOptions

    defaults = generate_kwargs(args)
    try:
        GenerateOptions(**defaults)
    except ValueError as exc:
        raise LipdubError(f"invalid option: {exc}") from None
    if args.broker and not args.storage:
        raise LipdubError("--broker needs --storage DIR: the folder the workers mount")
    if args.manifest:
        if args.avatar or args.audio_dir or args.out_dir:
            raise LipdubError("give either MANIFEST or --avatar/--audio-dir/--out-dir, not both")
        items = load_manifest(args.manifest)
    elif args.avatar and args.audio_dir and args.out_dir:
        items = items_from_dir(args.avatar, args.audio_dir, args.out_dir)
    else:
        raise LipdubError("give a MANIFEST, or all of --avatar, --audio-dir and --out-dir")
    if not items:
        print("nothing to do: no items")
        return 0
    if args.broker:
        report = run_batch_broker(items, args.broker, args.storage, options=defaults,
                                  timeout=args.timeout)
    else:
        report = run_batch(items, jobs=args.jobs, options=defaults)
    print(report.summary())
    return 0 if report.ok else 1


def _cmd_demo(args: argparse.Namespace) -> int:
    from lipdub.demo import run_demo

    summary = run_demo(args.output, text=args.text)
    print(f"wrote {summary['path']}: {summary['frames']} frames in {summary['seconds']:.1f} s")
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("generate", help="dub speech audio onto an avatar",
                       description="Write OUT.mp4: the avatar (a prepared folder, or a raw video, "
                                   "prepared once and cached; no training) saying the audio. Audio "
                                   "shorter than one video frame (40 ms at 25 fps) is refused with "
                                   "an error; a WAV cut short (its data ends before its header "
                                   "says) is dubbed as far as it goes, with a warning. The video is "
                                   "checked before it replaces OUT.mp4 (video frames, audio, the "
                                   "audio's length within one frame): otherwise nothing is written "
                                   "and the exit status is non-zero.")
    p.add_argument("--avatar", required=True, help="avatar folder, or a video to prepare first")
    p.add_argument("--audio", required=True, help="speech audio (any ffmpeg-readable file)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.mp4", help="video to write")
    add_generate_options(p)
    p.set_defaults(func=_cmd_generate)

    p = sub.add_parser("batch", help="dub many audio files (manifest or folder), resumable",
                       description="Run every item of MANIFEST (CSV or JSON rows: avatar, audio, "
                                   "output, options as a JSON object), or every audio file in "
                                   "--audio-dir for --avatar. Outputs that already exist and are "
                                   "complete are skipped, so a second run resumes; failed items are "
                                   "listed at the end and make the exit status 1. The generate "
                                   "options below apply to every item (an item's own win).")
    p.add_argument("manifest", nargs="?", default=None, metavar="MANIFEST",
                   help="CSV (header avatar,audio,output[,options]) or JSON list of items")
    p.add_argument("--avatar", default=None, help="with --audio-dir: the avatar for every file")
    p.add_argument("--audio-dir", default=None, metavar="DIR", help="dub every audio file in DIR")
    p.add_argument("--out-dir", default=None, metavar="DIR", help="write DIR/<audio name>.mp4")
    p.add_argument("--jobs", "-j", type=int, default=1, metavar="N",
                   help="items run at the same time, each in its own process (default 1)")
    p.add_argument("--broker", default=None, metavar="URL",
                   help="send the items to `lipdub worker`s through this Redis instead "
                        "(redis://HOST:PORT/0); needs --storage")
    p.add_argument("--storage", default=None, metavar="DIR",
                   help="with --broker: the shared folder the workers mount as --storage")
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="with --broker: give up waiting after S seconds")
    add_generate_options(p)
    p.set_defaults(func=_cmd_batch)

    p = sub.add_parser("demo", help="write a demo video: a photo that talks (no input needed)",
                       description="The astronaut photo shipped by scikit-image says a sentence: a "
                                   "photo avatar, prepared and dubbed. The built-in sentence ships "
                                   "as audio in the package; --text needs espeak-ng.")
    p.add_argument("-o", "--output", default="demo.mp4", metavar="OUT.mp4",
                   help="video to write (default demo.mp4)")
    p.add_argument("--text", default=None,
                   help="say this instead of the built-in sentence (spoken by espeak-ng)")
    p.set_defaults(func=_cmd_demo)
