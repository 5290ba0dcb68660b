"""Renderer pieces: network shapes, ONNX parity, warping, masks, retrieval, a tiny training run."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lipdub.render.condition import draw_condition, masks, network_input, shape_points, to_crop  # noqa: E402
from lipdub.render.export import export_onnx, parity_psnr  # noqa: E402
from lipdub.render.modules import IN_CHANNELS, MouthRenderer  # noqa: E402
from lipdub.render.reference import ReferenceBank  # noqa: E402
from lipdub.render.warp import tps_maps, warp  # noqa: E402
from test_composite import fake_landmarks  # noqa: E402


def test_network_shapes_and_identity_start():
    model = MouthRenderer((8, 16, 16))
    x = torch.rand(2, IN_CHANNELS, 32, 32)
    y = model(x)
    assert y.shape == (2, 3, 32, 32)
    # The residual head starts at zero: an untrained renderer returns the warped reference.
    assert torch.allclose(y, x[:, :3])


def test_onnx_parity(tmp_path):
    torch.manual_seed(0)
    model = MouthRenderer((8, 16, 16))
    torch.nn.init.normal_(model.head.weight, std=0.05)
    path = export_onnx(model, tmp_path / "r.onnx", 32)
    x = np.random.default_rng(0).random((3, IN_CHANNELS, 32, 32), dtype=np.float32)
    assert parity_psnr(model, path, x) >= 40.0


def test_warp_identity_and_point_transfer():
    rng = np.random.default_rng(0)
    pts = rng.uniform(30, 90, (40, 2)).astype(np.float32)
    mx, my = tps_maps(pts, pts, 128)
    ys, xs = np.mgrid[0:128, 0:128]
    assert np.abs(mx - xs)[3:-3, 3:-3].max() < 0.01 and np.abs(my - ys)[3:-3, 3:-3].max() < 0.01
    # A smooth displacement of the points is reproduced where the points are.
    moved = pts * 1.05 - 3.0
    mx, my = tps_maps(moved, pts, 128)
    got = mx[np.round(moved[:, 1]).astype(int), np.round(moved[:, 0]).astype(int)]
    assert np.abs(got - pts[:, 0]).mean() < 1.0
    img = rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)
    assert warp(img, pts, pts)[4:-4, 4:-4].astype(int).__sub__(img[4:-4, 4:-4]).__abs__().max() <= 1


def test_condition_and_masks():
    lm = to_crop(fake_landmarks(64, 60, 20), (0, 0, 128, 128), 64)
    cond = draw_condition(lm, 64)
    assert cond.shape == (3, 64, 64) and cond.max() <= 1.0 and cond.reshape(3, -1).max(1).min() > 0.5
    hidden, alpha = masks([lm], 64)
    assert hidden.dtype == np.uint8 and alpha.dtype == np.float32
    assert (alpha[hidden == 0] == 0).all() and alpha.max() > 0.99
    crop_img = np.full((64, 64, 3), 200, np.uint8)
    x = network_input(crop_img, crop_img, lm, hidden)
    assert x.shape == (IN_CHANNELS, 64, 64)
    assert (x[3:6][:, hidden > 0] == 0).all()  # the target's mouth is hidden from the network


def test_bank_retrieval_excludes_neighbours_and_is_sticky():
    shapes = [shape_points(to_crop(fake_landmarks(32, 30, 10, opening=o), (0, 0, 64, 64), 64))
              for o in np.linspace(0, 8, 20)]
    bank = ReferenceBank(np.zeros((20, 64, 64, 3), np.uint8), np.stack(shapes), np.arange(20))
    near = bank.nearest(bank.points, k=1)
    assert (near[:, 0] == np.arange(20)).all()
    near = bank.nearest(bank.points, k=1, exclude_frames=np.arange(20), exclude_radius=2)
    assert (np.abs(near[:, 0] - np.arange(20)) > 2).all()
    seq = bank.sequence(bank.points[[5, 5, 6, 5]])
    assert seq[0] == 5 and len(set(seq.tolist())) <= 2
