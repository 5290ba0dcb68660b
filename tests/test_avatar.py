"""lipdub.avatar: prepare a clip or photo, read it back, and never lose an avatar already saved."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest

from fixtures import astronaut, talking_frames, write_video
from lipdub.audio.whisper import FEATURE_DIM
from lipdub.avatar import Avatar, PrepareOptions, prepare
from lipdub.errors import InputError, NoFaceError, OutputError
from lipdub.face import MOUTH_CORNERS, N_LANDMARKS
from lipdub.photo import PhotoOptions
from lipdub.video import read_frames

# Photos prepared as one still frame (the idle-motion template is tested in test_photo.py).
STILL = PhotoOptions(seconds=0)


@pytest.fixture(scope="module")
def talking_avatar(talking_clip, tmp_path_factory) -> Avatar:
    calls = []
    avatar = prepare(talking_clip, tmp_path_factory.mktemp("avatars") / "talking",
                     progress=lambda stage, fraction: calls.append((stage, fraction)))
    avatar.progress_calls = calls  # for the progress test
    return avatar


def _leftovers(parent: Path) -> list[str]:
    """Temporary build/backup folders prepare may have left next to the avatar."""
    return [p.name for p in parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


def test_prepare_stores_a_complete_avatar(talking_avatar, talking_clip):
    av = talking_avatar
    m = av.manifest
    assert m["format_version"] == 1 and m["source"] == talking_clip.name
    assert (m["fps"], m["n_frames"], m["width"], m["height"]) == (25.0, 50, 512, 512)
    assert len(m["source_sha256"]) == 64 and m["has_audio"] is True
    assert m["settings"]["smooth"] == 5 and m["settings"]["jpeg_quality"] == 95
    assert m["prepare_fps"] > 0 and m["prepare_seconds"] > 0 and m["created"]
    assert m["frames_with_face"] == 50 and av.face_found.all()
    assert av.landmarks.shape == av.raw_landmarks.shape == (50, N_LANDMARKS, 3)
    assert av.landmarks.dtype == np.float32 and np.isfinite(av.landmarks).all()
    assert av.boxes.shape == (50, 4) and av.boxes.dtype == np.int32
    assert (av.boxes[:, :2] >= 0).all() and (av.boxes[:, 2] <= 512).all() and (av.boxes[:, 3] <= 512).all()
    # The box holds the mouth in every frame.
    for (x0, y0, x1, y1), lm in zip(av.boxes, av.landmarks):
        for corner in MOUTH_CORNERS:
            assert x0 < lm[corner, 0] < x1 and y0 < lm[corner, 1] < y1
    assert len(list((av.path / "frames").glob("*.jpg"))) == 50
    assert not _leftovers(av.path.parent)


def test_smoothing_removes_jitter_but_not_the_speech(talking_avatar):
    from lipdub.face import mouth_aperture

    raw, smooth = mouth_aperture(talking_avatar.raw_landmarks), mouth_aperture(talking_avatar.landmarks)
    # The clip opens the mouth every 10 frames: both series swing, and agree closely.
    assert raw.max() - raw.min() > 0.15 and smooth.max() - smooth.min() > 0.15
    assert np.corrcoef(raw, smooth)[0, 1] > 0.95


def test_frames_read_back_match_the_decoded_video(talking_avatar, talking_clip):
    decoded = list(read_frames(talking_clip, fps=25.0))
    assert len(decoded) == 50
    for i in (0, 17, 49):
        frame = talking_avatar.frame(i)
        assert frame.shape == (512, 512, 3) and frame.dtype == np.uint8
        assert np.abs(frame.astype(int) - decoded[i].astype(int)).mean() < 2.0
    assert talking_avatar.frame(17) is talking_avatar.frame(17)  # cached
    with pytest.raises(ValueError):
        talking_avatar.frame(17)[0, 0, 0] = 1  # cached frames are shared: read-only
    streamed = list(talking_avatar.iter_frames([3, 1, 49]))
    for frame, i in zip(streamed, [3, 1, 49]):
        np.testing.assert_array_equal(frame, talking_avatar.frame(i))
    assert sum(1 for _ in talking_avatar.iter_frames()) == 50
    with pytest.raises(IndexError):
        talking_avatar.frame(50)


def test_audio_and_features_are_stored(talking_avatar):
    with wave.open(str(talking_avatar.audio_path)) as wav:
        assert wav.getframerate() == 16000 and wav.getnchannels() == 1
        assert 1.5 < wav.getnframes() / 16000 < 2.5  # the clip is cut to the 2 s of video
    features = talking_avatar.features()
    assert features is not None and features.n_frames == 50 and features.fps == 25.0
    assert features.mel.shape[0] == 50


def test_features_of_an_older_front_end_are_recomputed(talking_avatar, tmp_path, capsys):
    import shutil

    from lipdub.audio import FEATURES_VERSION, AudioFeatures

    folder = tmp_path / "old"
    shutil.copytree(talking_avatar.path, folder)
    current = np.load(folder / "features.npz")
    arrays = {k: current[k] for k in current.files}
    arrays["version"] = np.int64(FEATURES_VERSION - 1)
    arrays["whisper"] = np.zeros_like(arrays["whisper"])  # what an older encoder might have made
    np.savez(folder / "features.npz", **arrays)
    with pytest.raises(InputError, match="extract them again"):
        AudioFeatures.load(folder / "features.npz")
    capsys.readouterr()
    refreshed = Avatar.load(folder).features()
    assert "older lipdub" in capsys.readouterr().err  # the user is told why the wait
    assert np.abs(refreshed.whisper).max() > 0
    # The same as prepare made (from the stored 16-bit audio instead of the decoded floats).
    ours, made = refreshed.whisper, talking_avatar.features().whisper
    cosine = (ours * made).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(made, axis=1)
    assert cosine.min() > 0.98, cosine.min()
    assert AudioFeatures.load(folder / "features.npz").whisper.shape == (50, FEATURE_DIM)  # rewritten


def test_progress_reaches_the_end(talking_avatar):
    calls = talking_avatar.progress_calls
    tracking = [f for stage, f in calls if stage == "prepare"]
    assert tracking[-1] == 1.0 and len(tracking) >= 50
    # Then the renderer's mouth bank is cut from the frames (no training step follows).
    assert {stage for stage, _ in calls} == {"prepare", "crop frames"} and calls[-1] == ("crop frames", 1.0)


def test_load_round_trip(talking_avatar):
    again = Avatar.load(talking_avatar.path)
    assert again.n_frames == 50 and again.fps == 25.0 and again.has_audio
    np.testing.assert_array_equal(again.boxes, talking_avatar.boxes)


def test_prepare_a_photo(face_png, tmp_path):
    av = prepare(face_png, tmp_path / "photo", PrepareOptions(features=False), photo=STILL)
    assert av.n_frames == 1 and (av.width, av.height) == (512, 512)
    assert av.landmarks.shape == (1, N_LANDMARKS, 3) and not av.has_audio
    assert av.audio_path is None and av.features() is None
    np.testing.assert_allclose(av.landmarks[0, MOUTH_CORNERS[0], :2], (202, 139), atol=4)
    assert np.abs(av.frame(0).astype(int) - astronaut().astype(int)).mean() < 2.0
    # max_size shrinks the stored frames, and the landmarks are in the shrunk frame's pixels.
    small = prepare(face_png, tmp_path / "small", PrepareOptions(features=False, max_size=256), photo=STILL)
    assert (small.width, small.height) == (256, 256) and small.frame(0).shape == (256, 256, 3)
    np.testing.assert_allclose(small.landmarks[0, MOUTH_CORNERS[0], :2], (101, 69.5), atol=3)


def test_no_face_anywhere(no_face_clip, tmp_path):
    with pytest.raises(NoFaceError, match="no face found in"):
        prepare(no_face_clip, tmp_path / "none")
    assert not (tmp_path / "none").exists() and not _leftovers(tmp_path)


def test_mostly_faceless_footage(tmp_path):
    frames = list(talking_frames(8)) + [np.full((512, 512, 3), 128, np.uint8)] * 17
    clip = write_video(tmp_path / "mostly_empty.mp4", frames, fps=25)
    # By default part of a video without a face is fine: those frames will pass through untouched.
    av = prepare(clip, tmp_path / "few")
    assert 5 <= av.face_found.sum() <= 9 and np.isfinite(av.landmarks).all()
    assert (av.dub_weight[av.face_found.sum() + 1:] == 0).all() and (av.dub_weight[:4] > 0).all()
    np.testing.assert_array_equal(av.raw_landmarks[-1], av.raw_landmarks[av.face_found.nonzero()[0][-1]])
    # A caller can still ask for a minimum share of frames with a face.
    with pytest.raises(NoFaceError, match=r"only \d of 25 frames"):
        prepare(clip, tmp_path / "strict", PrepareOptions(min_face_fraction=0.5))


def test_not_a_media_file(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    with pytest.raises(InputError):
        prepare(text, tmp_path / "out")
    with pytest.raises(InputError):
        prepare(tmp_path / "missing.mp4", tmp_path / "out")
    assert not (tmp_path / "out").exists() and not _leftovers(tmp_path)


def test_existing_avatar_is_never_lost(talking_avatar, no_face_clip, face_png, tmp_path):
    import shutil

    target = tmp_path / "kept"
    shutil.copytree(talking_avatar.path, target)
    before = (target / "manifest.json").read_text()
    with pytest.raises(OutputError, match="already holds an avatar"):
        prepare(face_png, target, photo=STILL)
    with pytest.raises(NoFaceError):
        prepare(no_face_clip, target, overwrite=True)
    assert (target / "manifest.json").read_text() == before
    assert Avatar.load(target).n_frames == 50 and not _leftovers(tmp_path)
    # A successful overwrite replaces it completely.
    replaced = prepare(face_png, target, PrepareOptions(features=False), overwrite=True, photo=STILL)
    assert replaced.n_frames == 1 and not (target / "audio.wav").exists()
    assert len(list((target / "frames").iterdir())) == 1 and not _leftovers(tmp_path)


def test_refuses_a_folder_that_is_not_an_avatar(face_png, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "thesis.txt").write_text("precious")
    with pytest.raises(OutputError, match="not a lipdub avatar"):
        prepare(face_png, folder, overwrite=True, photo=STILL)
    assert (folder / "thesis.txt").read_text() == "precious"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert prepare(face_png, empty, PrepareOptions(features=False), photo=STILL).n_frames == 1


def test_load_rejects_what_is_not_an_avatar(tmp_path):
    with pytest.raises(InputError, match="not a lipdub avatar"):
        Avatar.load(tmp_path)
    with pytest.raises(InputError):
        Avatar.load(tmp_path / "nowhere")
    (tmp_path / "manifest.json").write_text(json.dumps({"format_version": 99}))
    with pytest.raises(InputError, match="format"):
        Avatar.load(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(InputError):
        Avatar.load(tmp_path)


def test_options_are_validated():
    with pytest.raises(ValueError):
        PrepareOptions(smooth=4)
    with pytest.raises(ValueError):
        PrepareOptions(min_face_fraction=1.5)
    with pytest.raises(ValueError):
        PrepareOptions(fps=0)


def test_the_two_kinds_import_neither_each_other_nor_the_dispatcher():
    import ast

    import lipdub

    root = Path(lipdub.__file__).parent

    def imports(path: Path) -> set[str]:
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names.add(node.module or "")
                names.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
        return names

    footage, photo = imports(root / "footage.py"), imports(root / "photo" / "prepare.py")
    for names, other in ((footage, "lipdub.photo"), (photo, "lipdub.footage")):
        assert not any(n == "lipdub.avatar" or n.startswith(other) for n in names), names
        assert "lipdub.avatar_folder" in names  # the folder format they share
