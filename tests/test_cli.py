"""The command line: help, version, and one-line errors with non-zero exits for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lipdub import __version__
from lipdub.cli import build_parser, main

COMMANDS = sorted(build_parser()._subparsers._group_actions[0].choices)  # noqa: SLF001


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code != 0
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("lipdub: error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_version_from_installed_script():
    exe = Path(sys.executable).with_name("lipdub")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "lipdub"]
    out = subprocess.run(cmd + ["--version"], capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"lipdub {__version__}"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(capsys, command):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert "usage: lipdub " + command in capsys.readouterr().out


def test_no_command_prints_help(capsys):
    code, out, _ = run_cli(capsys)
    assert code == 2 and "prepare" in out


def test_prepare_missing_file(capsys, tmp_path):
    code, _, err = run_cli(capsys, "prepare", tmp_path / "nope.mp4", "-o", tmp_path / "av")
    assert_one_line_error(code, err, "nope.mp4")
    assert not (tmp_path / "av").exists()


def test_prepare_not_a_media_file(capsys, tmp_path):
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is text, not a video\n" * 20)
    code, _, err = run_cli(capsys, "prepare", fake, "-o", tmp_path / "av")
    assert_one_line_error(code, err, "notes.mp4")
    assert not (tmp_path / "av").exists()


def test_prepare_no_face(capsys, tmp_path, no_face_clip):
    code, _, err = run_cli(capsys, "prepare", no_face_clip, "-o", tmp_path / "av")
    assert_one_line_error(code, err, "face")
    assert not (tmp_path / "av").exists()


def test_prepare_unwritable_output(capsys, tmp_path, face_png):
    if os.geteuid() == 0:
        # root ignores permission bits: make the parent a file instead, which nobody can write into
        parent = tmp_path / "a_file"
        parent.write_text("x")
    else:
        parent = tmp_path / "ro"
        parent.mkdir()
        parent.chmod(0o500)
    code, _, err = run_cli(capsys, "prepare", face_png, "-o", parent / "av")
    assert_one_line_error(code, err)


def test_prepare_photo_then_compare_identical(capsys, tmp_path, face_png, talking_clip):
    code, out, err = run_cli(capsys, "prepare", face_png, "-o", tmp_path / "av")
    assert code == 0, err
    assert "250 frames" in out and "frames/s" in out  # a 10 s idle template at 25 fps

    code, out, err = run_cli(capsys, "compare", talking_clip, talking_clip, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["psnr"]["mean"] == "inf"
    assert result["mouth"]["r"] == pytest.approx(1.0)
    assert result["mouth"]["lag"] == 0


def test_compare_missing_file(capsys, tmp_path, talking_clip):
    code, _, err = run_cli(capsys, "compare", talking_clip, tmp_path / "missing.mp4")
    assert_one_line_error(code, err, "missing.mp4")


def test_doctor_reports_every_component(capsys):
    code, out, _ = run_cli(capsys, "doctor")
    for name in ("ffmpeg", "mediapipe", "onnxruntime", "whisper", "silero-vad", "torch"):
        assert f"] {name}:" in out
    assert out.strip().splitlines()[-1] in ("all checks passed",) or "failed" in out
    assert (code == 0) == ("all checks passed" in out)


def test_prepare_invalid_option(capsys, tmp_path, face_png):
    code, _, err = run_cli(capsys, "prepare", face_png, "-o", tmp_path / "av", "--smooth", "4")
    assert_one_line_error(code, err, "invalid option")


def test_generate_bad_inputs_give_one_line_errors(capsys, tmp_path, tmp_path_factory, talking_clip,
                                                  silent_clip):
    from dub_fixtures import trained_avatar

    avatar = trained_avatar(talking_clip, tmp_path_factory)
    out = tmp_path / "out.mp4"
    code, _, err = run_cli(capsys, "generate", "--avatar", avatar.path, "--audio",
                           tmp_path / "nope.wav", "-o", out)
    assert_one_line_error(code, err, "nope.wav")
    code, _, err = run_cli(capsys, "generate", "--avatar", avatar.path, "--audio", silent_clip,
                           "-o", out)
    assert_one_line_error(code, err, "no audio stream")
    code, _, err = run_cli(capsys, "generate", "--avatar", tmp_path / "no_avatar", "--audio",
                           talking_clip, "-o", out)
    assert_one_line_error(code, err, "no_avatar")
    code, _, err = run_cli(capsys, "generate", "--avatar", avatar.path, "--audio", talking_clip,
                           "-o", out, "--fade-in", "-3")
    assert_one_line_error(code, err, "invalid option")
    assert not out.exists()

