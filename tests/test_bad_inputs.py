"""Bad and odd inputs through `lipdub generate` and `lipdub prepare`: each gives a valid output or
one clear error line with a non-zero exit and no output file; never a traceback, never exit 0
with a broken video. The corpus is made on the fly (tests/bad_media.py)."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

import bad_media
from lipdub.cli import main
from lipdub.video import probe

_CORPUS: dict[str, list] = {}


def run_cli(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    _, err = capsys.readouterr()
    return code, err


def audio_seconds(path: Path) -> float:
    from lipdub.audio import load_audio

    return len(load_audio(path)) / 16000


def assert_valid_dub(out: Path, seconds: float) -> None:
    info = probe(out)
    assert info.has_video and info.n_frames >= 1 and info.has_audio, info
    assert abs(info.duration - seconds) <= 1 / 25 + 1e-3, (info.duration, seconds)
    assert abs(info.audio_duration - seconds) <= 1 / 25 + 1e-3, (info.audio_duration, seconds)


def assert_clear_error(code: int, err: str, out: Path | None) -> None:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("lipdub: error: ")]
    assert code != 0 and len(errors) == 1, err
    assert all(line.startswith("lipdub: ") for line in lines), err  # warnings at most, no traceback
    if out is not None:
        assert not out.exists()
        assert not list(out.parent.glob("*.partial*")) if out.parent.is_dir() else True


@pytest.fixture(scope="module")
def avatar(talking_clip, tmp_path_factory):
    from dub_fixtures import trained_avatar

    return trained_avatar(talking_clip, tmp_path_factory)


def audio_corpus(tmp_path_factory, speech_wav, talking_clip, silent_clip, face_png):
    if "audio" not in _CORPUS:
        root = tmp_path_factory.mktemp("bad-audio")
        _CORPUS["audio"] = bad_media.audio_cases(root, speech_wav, talking_clip, silent_clip, face_png)
    return _CORPUS["audio"]


AUDIO_NAMES = ["empty.wav", "10ms.wav", "truncated.wav", "truncated_to_20ms.wav", "header_only.wav",
               "lying_size_huge.wav", "lying_size_zero.wav", "lying_rate_zero.wav",
               "lying_channels_zero.wav", "lying_rate_1mhz.wav", "lying_rate_4khz.wav", "8khz.wav",
               "96khz.wav", "6ch.wav", "random_bytes.wav", "text.wav", "nan_float.wav",
               "speech_named.wav", "video_as_audio.mp4", "video_without_sound.mp4",
               "photo_as_audio.png", "a folder.wav", "link.wav", "dangling.wav", "non-ascii name",
               "missing.wav"]


def test_the_corpus_names_every_case(tmp_path_factory, speech_wav, talking_clip, silent_clip, face_png):
    names = [c.name for c in audio_corpus(tmp_path_factory, speech_wav, talking_clip, silent_clip, face_png)]
    assert names == AUDIO_NAMES


@pytest.mark.parametrize("name", AUDIO_NAMES)
def test_generate_with_bad_or_odd_audio(capsys, tmp_path, tmp_path_factory, avatar, speech_wav,
                                        talking_clip, silent_clip, face_png, name):
    cases = audio_corpus(tmp_path_factory, speech_wav, talking_clip, silent_clip, face_png)
    case = next(c for c in cases if c.name == name)
    out = tmp_path / "dub ünï" / "out put.mp4"
    code, err = run_cli(capsys, "generate", "--avatar", avatar.path, "--audio", case.path, "-o", out)
    if case.expect == "ok":
        assert code == 0, err
        assert_valid_dub(out, audio_seconds(case.path))
    else:
        assert_clear_error(code, err, out)


def test_audio_shorter_than_a_frame_is_refused_with_its_length(capsys, tmp_path, tmp_path_factory,
                                                              avatar, speech_wav, talking_clip,
                                                              silent_clip, face_png):
    cases = audio_corpus(tmp_path_factory, speech_wav, talking_clip, silent_clip, face_png)
    short = next(c for c in cases if c.name == "10ms.wav")
    code, err = run_cli(capsys, "generate", "--avatar", avatar.path, "--audio", short.path,
                        "-o", tmp_path / "o.mp4")
    assert code == 2 and "10 ms of audio, shorter than one video frame (40 ms at 25 fps)" in err
    # a raw video is not prepared first: the refusal comes before any preparation
    from lipdub.errors import InputError
    from lipdub.pipeline import GenerateOptions, generate

    cache = tmp_path / "cache"
    with pytest.raises(InputError, match="shorter than one video frame"):
        generate(talking_clip, short.path, tmp_path / "o.mp4", GenerateOptions(cache_dir=str(cache)))
    assert not cache.exists() or not any(cache.iterdir())


def test_a_truncated_wav_is_decoded_as_far_as_it_goes_with_a_warning(capsys, tmp_path, tmp_path_factory,
                                                                   avatar, speech_wav, talking_clip,
                                                                   silent_clip, face_png):
    cases = audio_corpus(tmp_path_factory, speech_wav, talking_clip, silent_clip, face_png)
    cut = next(c for c in cases if c.name == "truncated.wav")
    out = tmp_path / "o.mp4"
    code, err = run_cli(capsys, "generate", "--avatar", avatar.path, "--audio", cut.path, "-o", out)
    assert code == 0
    assert "lipdub: warning:" in err and "header promises 1.00 s" in err and "holds 0.50 s" in err
    assert_valid_dub(out, 0.5)


def test_generate_with_a_damaged_avatar_folder(capsys, tmp_path, avatar, speech_wav):
    cases = bad_media.avatar_cases(tmp_path / "avatars", Path(avatar.path))
    assert len(cases) >= 9
    for case in cases:
        out = tmp_path / f"{case.name}.mp4"
        code, err = run_cli(capsys, "generate", "--avatar", case.path, "--audio", speech_wav, "-o", out)
        assert_clear_error(code, err, out)
        assert case.name.split("_")[-1] in err or "avatar" in err or "manifest" in err, err


def test_newer_avatar_format_says_upgrade(capsys, tmp_path, avatar, speech_wav):
    case = next(c for c in bad_media.avatar_cases(tmp_path / "avatars", Path(avatar.path))
                if c.name == "newer_manifest")
    code, err = run_cli(capsys, "generate", "--avatar", case.path, "--audio", speech_wav, "-o", tmp_path / "o.mp4")
    assert code == 2 and "newer lipdub" in err and "upgrade" in err


def test_output_locations(capsys, tmp_path, avatar, speech_wav):
    seconds = audio_seconds(speech_wav)
    folder = tmp_path / "a folder"
    folder.mkdir()
    code, err = run_cli(capsys, "generate", "--avatar", avatar.path, "--audio", speech_wav, "-o", folder)
    assert_clear_error(code, err, None)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code, err = run_cli(capsys, "generate", "--avatar", avatar.path, "--audio", speech_wav,
                        "-o", blocker / "o.mp4")
    assert_clear_error(code, err, None)
    deep = tmp_path / "new" / "déjà vu" / "out put.mp4"
    code, err = run_cli(capsys, "generate", "--avatar", avatar.path, "--audio", speech_wav, "-o", deep)
    assert code == 0, err
    assert_valid_dub(deep, seconds)


def _mount(path: Path, options: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                          capture_output=True).returncode == 0


@pytest.mark.parametrize("options, what", [("ro", "read-only"), ("size=200k", "full")])
def test_read_only_and_full_output_folders(capsys, tmp_path, avatar, speech_wav, options, what):
    mount = tmp_path / what
    if not _mount(mount, options):
        pytest.skip(f"cannot mount a {what} tmpfs here (needs root or CAP_SYS_ADMIN)")
    try:
        existing = mount / "old.mp4"
        if what == "full":
            existing.write_bytes(b"precious")
        out = existing if what == "full" else mount / "o.mp4"
        code, err = run_cli(capsys, "generate", "--avatar", avatar.path, "--audio", speech_wav, "-o", out)
        assert_clear_error(code, err, None)
        assert ("Read-only" in err or "read-only" in err) if what == "read-only" else ("space" in err), err
        if what == "full":
            assert existing.read_bytes() == b"precious"  # the old file survives a failed run
        assert not list(mount.glob("*.partial*"))
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_prepare_with_bad_or_odd_footage(capsys, tmp_path, talking_clip, face_png, speech_wav, no_face_clip):
    cases = bad_media.visual_cases(tmp_path / "visual", talking_clip, face_png, speech_wav, no_face_clip)
    for case in cases:
        out = tmp_path / "avatars" / case.name
        code, err = run_cli(capsys, "prepare", case.path, "-o", out, "--idle-seconds", "1")
        if case.expect == "ok":
            assert code == 0, (case.name, err)
            from lipdub.avatar import Avatar

            avatar = Avatar.load(out)
            if case.name == "rotated.mp4":  # stored 512x400, shown (and prepared) 400x512
                assert (avatar.width, avatar.height) == (400, 512)
            if case.name == "4k.mp4":
                assert avatar.n_frames == 10 and avatar.width >= 1920
        else:
            assert_clear_error(code, err, None)
            assert not (out / "manifest.json").exists()


def test_an_hour_of_audio_loads_in_bounded_memory(tmp_path):
    """An hour of 8 kHz audio decoded to 16 kHz float32 (230 MB): the peak stays near that,
    not a multiple of it (a subprocess, so the peak is its own)."""
    import numpy as np

    path = tmp_path / "hour.wav"
    with open(path, "wb") as f:
        f.write(bad_media.wav_bytes(np.zeros(0), rate=8000, data_size=3600 * 8000 * 2)[:44])
        block = np.zeros(8000 * 60, "<i2").tobytes()
        for _ in range(60):
            f.write(block)
    code = ("import resource, sys; from lipdub.audio import load_audio\n"
            "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            f"a = load_audio({str(path)!r})\n"
            "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "print(len(a), base, peak)\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    n, base, peak = map(int, res.stdout.split())
    assert n == 3600 * 16000
    grown_mb = (peak - base) / 1024  # ru_maxrss is in KiB on Linux
    assert grown_mb < 1.6 * n * 4 / 2**20, f"{grown_mb:.0f} MB for {n * 4 / 2**20:.0f} MB of samples"
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss > 0


def test_a_cut_short_partial_file_does_not_make_the_avatar_damaged(tmp_path, avatar):
    import shutil

    from lipdub.avatar import Avatar

    copy = tmp_path / "avatar"
    shutil.copytree(avatar.path, copy)
    (copy / "renderer.partial.onnx").write_bytes(b"\x08\x07 cut short")  # training was killed
    (copy / "render_bank.partial.npz").write_bytes(b"PK\x03")
    assert Avatar.load(copy).n_frames == avatar.n_frames
