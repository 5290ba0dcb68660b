"""Video-to-video controls of GenerateOptions, each measured on the output."""

from __future__ import annotations

import numpy as np
import pytest

from dub_fixtures import padded_speech, trained_avatar
from lipdub.pipeline import GenerateOptions, dub_weights, template_order


# ------------------------------------------------------------------------- pure functions

def test_walk_orders():
    assert template_order(10, 4).tolist() == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3]
    assert template_order(9, 4, loop="wrap").tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 0]
    assert template_order(6, 4, start=2).tolist() == [2, 3, 2, 1, 0, 1]
    assert template_order(6, 4, loop="wrap", start=2).tolist() == [2, 3, 0, 1, 2, 3]
    # half the output rate: two template frames per output frame
    assert template_order(4, 10, step=2.0).tolist() == [0, 2, 4, 6]


def test_options_validate():
    for bad in (dict(loop="bounce"), dict(fade_in=-1), dict(template_frames=0), dict(fps=0),
                dict(max_size=4), dict(crf=60), dict(preset="fastest"), dict(mouth_scale=-1)):
        with pytest.raises(ValueError):
            GenerateOptions(**bad)


class _Vad:
    fps = 25.0

    def __init__(self, vad):
        self.vad = np.asarray(vad, np.float32)


def test_dub_weights():
    assert dub_weights(50, GenerateOptions()) is None
    w = dub_weights(50, GenerateOptions(fade_in=25, fade_out=10))
    assert w[0] == 0 and 0 < w[12] < 1 and (w[25:39] == 1).all()
    assert w[-1] == 0 and 0 < w[-5] < 1
    vad = np.r_[np.zeros(10), np.ones(20), np.zeros(10)]
    w = dub_weights(40, GenerateOptions(keep_silence=True), _Vad(vad))
    assert (w[:10] == 0).all() and (w[30:] == 0).all() and (w[14:26] == 1).all()


# ------------------------------------------------------------------------- on real output

@pytest.fixture(scope="module")
def avatar(talking_clip, tmp_path_factory):
    pytest.importorskip("torch")
    return trained_avatar(talking_clip, tmp_path_factory)


@pytest.fixture(scope="module")
def baseline(avatar, speech_wav):
    """Frames of the plain dub (motion model): what the controls are measured against."""
    from lipdub.pipeline import frames

    return list(frames(avatar, speech_wav, GenerateOptions()))


def _mouth_box(avatar, i):
    x0, y0, x1, y1 = (int(v) for v in avatar.boxes[i])
    return slice(max(0, y0), y1), slice(max(0, x0), x1)


def test_fade_in_and_out(avatar, speech_wav, baseline):
    from lipdub.pipeline import frames

    n = len(baseline)
    order = template_order(n, avatar.n_frames)
    got = list(frames(avatar, speech_wav, GenerateOptions(fade_in=25, fade_out=10)))
    assert len(got) == n
    first = avatar.frame(int(order[0]))
    ys, xs = _mouth_box(avatar, int(order[0]))
    assert not np.array_equal(baseline[0][ys, xs], first[ys, xs])   # the dub changes the mouth...
    assert np.array_equal(got[0], first)                            # ...but frame 0 is the template's
    assert np.array_equal(got[29], baseline[29])                    # fully dubbed after the fade
    mid = np.abs(got[12].astype(int) - baseline[12]).sum()
    assert 0 < mid < np.abs(avatar.frame(int(order[12])).astype(int) - baseline[12]).sum()
    assert np.array_equal(got[-1], avatar.frame(int(order[-1])))    # faded back out
    assert np.array_equal(got[n - 11], baseline[n - 11])


def test_keep_silence_leaves_silent_frames_untouched(avatar, speech_wav, tmp_path):
    from lipdub.audio import extract_features, speech_mask
    from lipdub.pipeline import frames

    audio = padded_speech(speech_wav, tmp_path / "padded.wav", before=1.0, after=1.0)
    feats = extract_features(audio, fps=25.0, mel=False, whisper=False, vad=True)
    speaking = speech_mask(feats.vad)
    assert not speaking[:20].any() and speaking.any()
    order = template_order(feats.n_frames, avatar.n_frames)
    changed = 0
    for i, (out, real) in enumerate(zip(frames(avatar, audio, GenerateOptions(keep_silence=True)),
                                        avatar.iter_frames(order))):
        if not speaking[i]:
            assert np.array_equal(out, real), f"silent frame {i} was changed"
        else:
            changed += not np.array_equal(out, real)
    assert changed > 10


class _Spy:
    """An avatar that records which template frames are decoded."""

    def __init__(self, avatar):
        self._avatar, self.read = avatar, []

    def __getattr__(self, name):
        return getattr(self._avatar, name)

    def iter_frames(self, indices=None, **kw):
        indices = list(range(self._avatar.n_frames) if indices is None else indices)
        self.read.extend(int(i) for i in indices)
        return self._avatar.iter_frames(indices, **kw)


@pytest.mark.parametrize("opts, expect", [
    (dict(template_frames=10), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 8, 7, 6]),
    (dict(template_frames=10, start_frame=7), [7, 8, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 1]),
    (dict(template_frames=10, start_frame=7, loop="wrap"), [7, 8, 9, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
    (dict(start_frame=30, loop="wrap"), [30, 31, 32]),
])
def test_template_walk(avatar, opts, expect):
    from lipdub.pipeline import frames

    spy = _Spy(avatar)
    one_second = np.zeros(16000, np.float32)
    out = list(frames(spy, one_second, GenerateOptions(shapes="template", **opts)))
    assert len(out) == 25
    assert spy.read[:len(expect)] == expect
    if "template_frames" in opts:
        assert max(spy.read) < opts["template_frames"]
    # and the pixels away from the mouth are those template frames
    for i, k in enumerate(expect):
        assert np.array_equal(out[i][:100], avatar.frame(k)[:100])


def test_start_frame_past_the_template_is_refused(avatar):
    from lipdub.errors import InputError
    from lipdub.pipeline import frames

    with pytest.raises(InputError):
        next(frames(avatar, np.zeros(16000, np.float32), GenerateOptions(template_frames=5, start_frame=5)))


def test_smooth_source_steadies_the_template_landmarks(avatar):
    from lipdub.pipeline import template_for

    raw = template_for(avatar, GenerateOptions()).landmarks
    smooth = template_for(avatar, GenerateOptions(smooth_source=9)).landmarks
    assert smooth.shape == raw.shape
    jitter = lambda lm: np.abs(np.diff(lm[:, :, :2], 2, axis=0)).mean()  # noqa: E731
    assert jitter(smooth) < 0.5 * jitter(raw)
    assert np.abs(smooth.mean(0) - raw.mean(0)).max() < 2.0  # same face, only steadier


def _mouth_motion(avatar, speech_wav, **opts):
    from lipdub.audio import extract_features
    from lipdub.motion import MOUTH_POINTS
    from lipdub.pipeline import target_chunks

    feats = extract_features(speech_wav, fps=25.0)
    lms = np.concatenate([lm for _, lm in target_chunks(avatar, feats, feats.n_frames,
                                                        GenerateOptions(**opts))])
    return lms[:, list(MOUTH_POINTS), :2] - avatar.landmarks[template_order(len(lms), avatar.n_frames)][
        :, list(MOUTH_POINTS), :2]


def test_mouth_scale_and_motion_smooth(avatar, speech_wav):
    base = _mouth_motion(avatar, speech_wav)
    big = _mouth_motion(avatar, speech_wav, mouth_scale=2.0)
    none = _mouth_motion(avatar, speech_wav, mouth_scale=0.0)
    # mouth_scale=0 keeps the neutral mouth (in each frame's pose): the motion is what it adds
    moved = lambda m: np.abs(m - none).mean()  # noqa: E731
    assert moved(base) > 0.1
    assert 1.8 < moved(big) / moved(base) < 2.2
    steady = _mouth_motion(avatar, speech_wav, motion_smooth=4.0)
    rough = _mouth_motion(avatar, speech_wav, motion_smooth=0.0)
    speed = lambda m: np.abs(np.diff(m, axis=0)).mean()  # noqa: E731
    assert speed(steady - none) < 0.6 * speed(rough - none)


def test_max_size_fps_and_quality_through_the_cli(avatar, speech_wav, tmp_path):
    from lipdub.audio import load_audio
    from lipdub.cli import main
    from lipdub.video import probe

    seconds = len(load_audio(speech_wav)) / 16000
    small = tmp_path / "small.mp4"
    assert main(["generate", "--avatar", str(avatar.path), "--audio", str(speech_wav), "-o", str(small),
                 "--shapes", "template", "--max-size", "256", "--fps", "15", "--crf", "35",
                 "--preset", "ultrafast"]) == 0
    info = probe(small)
    assert (info.width, info.height) == (256, 256)
    assert abs(info.fps - 15) < 0.01 and abs(info.duration - seconds) <= 1.5 / 15
    full = tmp_path / "full.mp4"
    assert main(["generate", "--avatar", str(avatar.path), "--audio", str(speech_wav), "-o", str(full),
                 "--shapes", "template", "--fade-in", "25", "--keep-silence"]) == 0
    info = probe(full)
    assert (info.width, info.height, round(info.fps)) == (512, 512, 25)
    assert small.stat().st_size < 0.6 * full.stat().st_size  # (both carry the same AAC track)


def test_generate_help_lists_every_control():
    import subprocess
    import sys

    text = subprocess.run([sys.executable, "-m", "lipdub.cli", "generate", "--help"],
                          capture_output=True, text=True, check=True).stdout
    for flag in ("--fade-in", "--fade-out", "--template-frames", "--start-frame", "--loop",
                 "--smooth-source", "--motion-smooth", "--mouth-scale", "--max-size", "--fps",
                 "--crf", "--preset", "--keep-silence"):
        assert flag in text, flag
