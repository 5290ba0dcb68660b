"""Argument types and option groups that several commands share."""

from __future__ import annotations

import argparse


def face_choice(text: str):
    """`--face N` (N-th face from the left) or `--face X,Y` (the face at that point, fractions)."""
    try:
        if "," in text:
            x, y = (float(v) for v in text.split(","))
            if not (0 <= x <= 1 and 0 <= y <= 1):
                raise ValueError
            return (None, (x, y))
        value = int(text)
        if value < 0:
            raise ValueError
        return value
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected N (0-based, from the left) or X,Y (fractions 0..1), got {text!r}") from None


#: GenerateOptions fields set from `generate` / `batch` arguments of the same name
GENERATE_ARGS = ("template", "shapes", "mouth_scale", "motion_smooth", "match_voice", "fade_in", "fade_out",
                 "template_frames", "start_frame", "loop", "smooth_source", "keep_silence",
                 "max_size", "fps", "crf", "preset")


def generate_kwargs(args: argparse.Namespace) -> dict:
    kwargs = {name: getattr(args, name) for name in GENERATE_ARGS}
    face = getattr(args, "face", None)
    if face is not None:  # --face N or X,Y: who to dub when the avatar is a raw video
        kwargs["face_index"], kwargs["face_point"] = face if isinstance(face, tuple) else (face, None)
    return kwargs


def add_generate_options(p: argparse.ArgumentParser) -> None:
    """The GenerateOptions controls, shared by `generate` and `batch` (defaults = the library's)."""
    p.add_argument("--template", default=None, metavar="AVATAR_DIR",
                   help="other prepared footage of the same person to draw the frames from")
    p.add_argument("--shapes", choices=["audio", "template"], default="audio",
                   help="mouth shapes from the audio (default) or the template's own mouths")
    p.add_argument("--mouth-scale", type=float, default=1.0, metavar="X",
                   help="mouth-opening amplitude, 1 = the avatar's own range (default 1)")
    p.add_argument("--motion-smooth", type=float, default=1.0, metavar="K",
                   help="temporal smoothing of the mouth motion, Gaussian sigma in frames (default 1)")
    p.add_argument("--no-voice-match", dest="match_voice", action="store_false",
                   help="keep the avatar's amplitude map as fitted on its own voice instead of "
                        "re-keying it to the driving voice's range (its first 12 s)")
    p.add_argument("--fade-in", type=int, default=0, metavar="N",
                   help="frames over which the dubbed mouth blends in from the template's own "
                        "(25 = 1 s at 25 fps; default 0)")
    p.add_argument("--fade-out", type=int, default=0, metavar="N",
                   help="frames over which it blends back to the template's own mouth at the end "
                        "(default 0)")
    p.add_argument("--template-frames", type=int, default=None, metavar="N",
                   help="use only the first N template frames (default: all)")
    p.add_argument("--start-frame", type=int, default=0, metavar="K",
                   help="start the walk over the template at its frame K (default 0)")
    p.add_argument("--loop", choices=["pingpong", "wrap"], default="pingpong",
                   help="past the template's last frame: walk back (pingpong, default) or "
                        "jump to the first (wrap)")
    p.add_argument("--smooth-source", type=int, default=0, metavar="K",
                   help="smooth the template's face landmarks over K frames (steadier mouth on "
                        "jittery footage; default 0 = off)")
    p.add_argument("--keep-silence", action="store_true",
                   help="leave the template's own mouth where the audio is silent (voice activity)")
    p.add_argument("--max-size", type=int, default=None, metavar="PX",
                   help="downscale the output so its longer side is PX (default: the avatar's size)")
    p.add_argument("--fps", type=float, default=None,
                   help="output frame rate (default: the avatar's)")
    p.add_argument("--face", type=face_choice, default=None, metavar="N|X,Y",
                   help="when the avatar is a raw video: the person to dub, as for `lipdub prepare "
                        "--face` (default: the largest face)")
    p.add_argument("--crf", type=int, default=18, help="x264 quality, lower is better (default 18)")
    p.add_argument("--preset", default="veryfast", help="x264 preset (default veryfast)")
