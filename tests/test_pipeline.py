"""Generation: ping-pong walk, template frames in walk order, and a tiny train + generate run."""

from __future__ import annotations

import numpy as np
import pytest

from lipdub.pipeline import GenerateOptions, template_frames, template_order


def test_ping_pong_order():
    assert template_order(10, 4).tolist() == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3]
    assert template_order(3, 1).tolist() == [0, 0, 0]
    assert template_order(3, 5).tolist() == [0, 1, 2]


class _FakeAvatar:
    """Frames whose pixels encode their index."""

    n_frames, height, width = 5, 6, 8

    def iter_frames(self, indices=None):
        for i in range(self.n_frames) if indices is None else indices:
            yield np.full((self.height, self.width, 3), i, np.uint8)


def test_template_frames_follow_the_walk():
    order = template_order(23, 5)
    got = [int(f[0, 0, 0]) for f in template_frames(_FakeAvatar(), order)]
    assert got == order.tolist()


def test_options_validate():
    with pytest.raises(ValueError):
        GenerateOptions(shapes="nonsense")


@pytest.fixture(scope="module")
def tiny_avatar(talking_clip, tmp_path_factory):
    """The conftest talking clip, prepared, with a renderer trained for a few steps at 32 px."""
    pytest.importorskip("torch")
    from dub_fixtures import trained_avatar

    return trained_avatar(talking_clip, tmp_path_factory)


def test_train_writes_renderer(tiny_avatar):
    import json

    meta = json.loads((tiny_avatar.path / "renderer.json").read_text())
    assert meta["size"] == 32 and meta["steps"] == 3
    assert (tiny_avatar.path / "renderer.onnx").exists()
    assert meta["onnx_parity_psnr"] is None or meta["onnx_parity_psnr"] >= 40


def test_generate_length_matches_audio(tiny_avatar, speech_wav, tmp_path):
    from lipdub.audio import load_audio
    from lipdub.pipeline import generate
    from lipdub.video import probe

    out = generate(tiny_avatar, speech_wav, tmp_path / "out.mp4", GenerateOptions(shapes="template"))
    seconds = len(load_audio(speech_wav)) / 16000
    info = probe(out)
    n = round(info.duration * info.fps) if hasattr(info, "fps") else None
    assert info.has_audio
    assert abs(info.duration - seconds) <= 1.5 / 25
    assert n is None or abs(n - round(seconds * 25)) <= 1
    assert (info.width, info.height) == (tiny_avatar.width, tiny_avatar.height)


def test_frames_change_only_the_mouth(tiny_avatar, speech_wav):
    from lipdub.composite import paste_mask
    from lipdub.pipeline import frames
    from lipdub.render.condition import masks, to_crop

    gen = frames(tiny_avatar, speech_wav, GenerateOptions(shapes="template"))
    for i, (out, real) in enumerate(zip(gen, tiny_avatar.iter_frames())):
        if i >= 3:
            break
        lm = to_crop(tiny_avatar.landmarks[i], tiny_avatar.boxes[i], 32)
        _, alpha = masks([lm], 32)
        outside = ~paste_mask(real.shape, alpha, tiny_avatar.boxes[i])
        assert np.array_equal(out[outside], real[outside])


def test_generate_with_motion_model(tiny_avatar, speech_wav, tmp_path):
    from lipdub.errors import MissingDependencyError
    from lipdub.pipeline import generate

    try:
        out = generate(tiny_avatar, speech_wav, tmp_path / "sync.mp4", GenerateOptions())
    except MissingDependencyError as exc:
        pytest.skip(f"motion model not installed: {exc}")
    assert out.exists()


def test_raw_video_is_prepared_trained_and_cached(talking_clip, speech_wav, tmp_path):
    pytest.importorskip("torch")
    from lipdub.pipeline import generate
    from lipdub.render.train import TrainOptions

    opts = GenerateOptions(shapes="template", cache_dir=str(tmp_path / "cache"),
                           train=TrainOptions(steps=2, size=32, batch_size=4, widths=(8, 16, 16)))
    generate(talking_clip, speech_wav, tmp_path / "a.mp4", opts)
    (folder,) = list((tmp_path / "cache").iterdir())
    stamp = (folder / "renderer.onnx").stat().st_mtime_ns
    generate(talking_clip, speech_wav, tmp_path / "b.mp4", opts)
    assert (folder / "renderer.onnx").stat().st_mtime_ns == stamp  # reused, not retrained
    assert (tmp_path / "b.mp4").exists()


def test_raw_video_is_dubbed_with_no_training(talking_clip, speech_wav, tmp_path):
    """The default path: prepare (cached by hash) builds the mouth bank; generate trains nothing."""
    from lipdub.audio import load_audio
    from lipdub.pipeline import generate
    from lipdub.video import probe

    out = generate(talking_clip, speech_wav, tmp_path / "a.mp4", GenerateOptions(cache_dir=str(tmp_path / "c")))
    (folder,) = list((tmp_path / "c").iterdir())
    assert (folder / "render_bank.npz").exists()
    assert not (folder / "renderer.onnx").exists() and not (folder / "renderer.pt").exists()
    info = probe(out)
    assert info.has_audio and abs(info.duration - len(load_audio(speech_wav)) / 16000) <= 1.5 / 25


def test_a_trained_network_is_used_only_if_present(tiny_avatar):
    from lipdub.render.runtime import Renderer

    assert Renderer.load(tiny_avatar).use_network
    assert not Renderer.load(tiny_avatar, use_network=False).use_network


def test_mouth_bank_from_an_older_point_set_is_rebuilt(tiny_avatar, tmp_path):
    """A bank saved with fewer warp points (an older lipdub) is rebuilt on load, not a crash."""
    import shutil

    from lipdub.render.condition import WARP_IDX
    from lipdub.render.reference import ReferenceBank
    from lipdub.render.runtime import Renderer

    folder = tmp_path / "old"
    shutil.copytree(tiny_avatar.path, folder)
    bank = ReferenceBank.load(folder)
    ReferenceBank(bank.crops, bank.points[:, :-4], bank.frames, bank.full).save(folder)
    renderer = Renderer.load(folder)
    assert renderer.bank.points.shape[1] == len(WARP_IDX)
    assert ReferenceBank.load(folder).points.shape[1] == len(WARP_IDX)



def test_render_batch_sizes_do_not_change_the_frames(tiny_avatar, speech_wav):
    """The short first batch (the first frame comes sooner) draws what one long batch draws."""
    from lipdub.pipeline import frames

    opts = {"shapes": "template", "use_network": False}
    a = list(frames(tiny_avatar, speech_wav, GenerateOptions(chunk=32, **opts)))
    b = list(frames(tiny_avatar, speech_wav, GenerateOptions(chunk=3, **opts)))
    assert len(a) == len(b) > 8
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_a_short_first_motion_run_gives_the_same_mouths(tiny_avatar, speech_wav):
    from lipdub.audio import extract_features
    from lipdub.errors import MissingDependencyError
    from lipdub.pipeline import target_chunks

    feats = extract_features(speech_wav, fps=25.0)
    opts = GenerateOptions()
    try:
        whole = np.concatenate([lm for _, lm in target_chunks(tiny_avatar, feats, feats.n_frames, opts,
                                                              first=None)])
    except MissingDependencyError as exc:
        pytest.skip(f"motion model not installed: {exc}")
    runs = list(target_chunks(tiny_avatar, feats, feats.n_frames, opts, motion_chunk=40, first=7))
    assert len(runs[0][0]) == 7 and len(runs) > 2
    assert np.abs(np.concatenate([lm for _, lm in runs]) - whole).max() < 0.01
