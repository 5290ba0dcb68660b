"""The Python API: lazy `import lipdub`, keyword options, and the README example run as written."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dub_fixtures import trained_avatar

README = Path(__file__).resolve().parents[1] / "README.md"


def test_import_is_light_and_help_fast():
    code = ("import sys, lipdub; heavy = [m for m in ('numpy', 'cv2', 'onnxruntime', 'torch', "
            "'lipdub.pipeline') if m in sys.modules]; assert not heavy, heavy; "
            "assert 'generate' in dir(lipdub)")
    subprocess.run([sys.executable, "-c", code], check=True)
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "lipdub.cli", "--help"], check=True, capture_output=True)
    assert time.monotonic() - start < 3.0


def test_lazy_names():
    import lipdub
    from lipdub.pipeline import GenerateOptions

    assert lipdub.GenerateOptions is GenerateOptions
    with pytest.raises(AttributeError):
        lipdub.no_such_thing  # noqa: B018


@pytest.fixture(scope="module")
def avatar(talking_clip, tmp_path_factory):
    pytest.importorskip("torch")
    import lipdub

    base = trained_avatar(talking_clip, tmp_path_factory)
    return lipdub.Avatar.load(base.path)


def test_keyword_options(avatar, speech_wav, tmp_path):
    import lipdub
    from lipdub.video import probe

    assert avatar.trained
    with pytest.raises(TypeError, match="fade_inn"):
        lipdub.generate(avatar, speech_wav, tmp_path / "x.mp4", fade_inn=3)
    out = lipdub.generate(avatar, speech_wav, tmp_path / "o.mp4", lipdub.GenerateOptions(shapes="template"),
                          max_size=128)
    assert (probe(out).width, probe(out).height) == (128, 128)
    first = next(iter(lipdub.frames(avatar, np.zeros(8000, np.float32), shapes="template",
                                    fade_in=5)))
    assert np.array_equal(first, avatar.frame(0))


def _readme_example() -> str:
    text = README.read_text()
    section = text[text.index("## Python API"):]
    section = section[:section.index("\n## ", 3)]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert blocks, "no python example in the README's Python API section"
    return blocks[0]


def test_readme_example_runs(talking_clip, speech_wav, tmp_path, monkeypatch, capsys):
    code = _readme_example()
    for name, path in (("me.mp4", talking_clip), ("speech.wav", speech_wav)):
        assert f'"{name}"' in code
        code = code.replace(f'"{name}"', repr(str(path)))
    # The only change beyond paths: none. It prepares and dubs, with no training step.
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {"__name__": "__readme__"})
    from lipdub.audio import load_audio
    from lipdub.video import probe

    info = probe(tmp_path / "out.mp4")
    seconds = len(load_audio(speech_wav)) / 16000
    assert info.has_audio and abs(info.duration - seconds) <= 1.5 / 25
    folder = tmp_path / "avatars" / "me"
    assert (folder / "render_bank.npz").exists() and not (folder / "renderer.onnx").exists()
    assert f"{round(seconds * 25)} frames" in capsys.readouterr().out