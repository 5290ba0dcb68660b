"""The `lipdub` command: a thin front end over the Python API.

Each subcommand parses its arguments, calls one library function and prints the result. User
errors (``LipdubError``) become one line on stderr and a non-zero exit; imports of heavy stages
happen inside the handlers so `lipdub --help` stays instant. Each module here holds a group of
commands, its handlers beside its parsers (``add_parsers(sub)``).
"""

from __future__ import annotations

import argparse
import sys

from lipdub import __version__
from lipdub.cli import avatars, dub, service, stream, tools
from lipdub.errors import LipdubError

#: command groups, in the order `lipdub --help` lists them
GROUPS = (avatars, dub, stream, service, tools)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lipdub",
        description="Make the person in a video or photo say any speech audio (offline, CPU).")
    parser.add_argument("--version", action="version", version=f"lipdub {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group in GROUPS:
        group.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except LipdubError as exc:
        print(f"lipdub: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("lipdub: interrupted", file=sys.stderr)
        return 130
