"""Renderer pieces: network shapes, ONNX parity, warping, masks, retrieval, a tiny training run."""

from __future__ import annotations

import cv2
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



def test_a_closed_target_on_a_turned_chin_fetches_a_closed_mouth():
    """The target's chin line carries the frame's head pose; a parted mouth in that pose must not
    beat a closed one in another for a closed target (it would be drawn with a slit)."""
    from lipdub.render.condition import CHIN_IDX
    from lipdub.render.reference import inner_opening

    def mouth(opening, chin_shift):
        lm = fake_landmarks(32, 30, 10, opening=opening)
        lm[CHIN_IDX, 0] += chin_shift
        return shape_points(to_crop(lm, (0, 0, 64, 64), 64))

    closed_front, parted_turned = mouth(0.0, 0.0), mouth(1.5, 4.0)
    assert inner_opening(closed_front[None], 64)[0] < inner_opening(parted_turned[None], 64)[0]
    bank = ReferenceBank(np.zeros((2, 64, 64, 3), np.uint8), np.stack([closed_front, parted_turned]),
                         np.arange(2))
    assert bank.nearest(mouth(0.0, 4.0)[None], k=1)[0, 0] == 0
    # An open target still fetches the open mouth.
    assert bank.nearest(mouth(1.5, 0.0)[None], k=1)[0, 0] == 1

# --- The jaw below a moved chin: one jaw line, the template's collar (no grey "double chin") ---

SKIN, SHADOW, NECK, COLLAR = 170, 50, 140, 235


def _face_landmarks(cx, cy, hw):
    """fake_landmarks with distinct still context points (nose base, cheeks, jaw angles)."""
    from lipdub.render.condition import CONTEXT_IDX

    lm = fake_landmarks(cx, cy, hw)
    ang = np.linspace(-0.05 * np.pi, -0.95 * np.pi, len(CONTEXT_IDX))
    lm[CONTEXT_IDX, 0] = cx + 1.6 * hw * np.cos(ang)
    lm[CONTEXT_IDX, 1] = cy + 1.6 * hw * np.sin(ang)
    return lm


def _jaw_image(lm, side, neck_px):
    """Grey crop: skin above the chin arc, a 4-px shadow under it, ``neck_px`` of neck, then collar."""
    from lipdub.render.condition import CHIN_IDX

    chin = lm[CHIN_IDX, :2]
    order = np.argsort(chin[:, 0])
    ys = np.arange(side)[:, None]
    jaw = np.interp(np.arange(side), chin[order, 0], chin[order, 1])[None]
    img = np.full((side, side), COLLAR, np.uint8)
    img[ys < jaw + 4 + neck_px] = NECK
    img[ys < jaw + 4] = SHADOW
    img[ys < jaw] = SKIN
    return np.repeat(img[..., None], 3, 2)


@pytest.mark.parametrize("full", [False, True])
def test_raised_chin_leaves_no_ghost_jaw_line(tmp_path, full):
    """Target chin 7 px above the template's; the reference frame's collar sits 14 px lower than
    the template's. The output's centre column must show one dark jaw edge (near the target chin)
    and then the template's collar, with no grey band of blended jaw / neck between them."""
    from lipdub.composite import paste
    from lipdub.render.condition import CHIN_IDX, int_box
    from lipdub.render.runtime import Renderer

    size, side = 128, (256 if full else 128)
    k = side / size
    own = _face_landmarks(64, 56, 22)  # crop coordinates at ``size``
    target = own.copy()
    target[CHIN_IDX, 1] -= 7.0
    template = _jaw_image(own * k, side, 0)
    reference = _jaw_image(own * k, side, int(14 * k))
    box = np.array([40, 30, 40 + side, 30 + side], np.float32)
    frame = np.full((side + 80, side + 80, 3), 90, np.uint8)
    frame[30:30 + side, 40:40 + side] = template

    def to_frame(lm):
        out = lm.copy()
        out[:, :2] = lm[:, :2] * k + box[:2]
        return out

    small = cv2.resize(reference, (size, size), interpolation=cv2.INTER_AREA)
    bank = ReferenceBank(small[None], shape_points(own)[None], np.zeros(1, np.int32),
                         reference[None] if full else None)
    torch.manual_seed(0)
    path = export_onnx(MouthRenderer((8, 16, 16)), tmp_path / "r.onnx", size)  # identity net
    renderer = Renderer(path, bank)
    out = renderer.render_chunk([frame], box[None], to_frame(own)[None], to_frame(target)[None])
    result = paste(frame.copy(), out.crops[0], out.alphas[0], box, out.templates[0])
    x0, y0, _, _ = int_box(box)
    cx = int(round(64 * k))
    col = result[y0:y0 + side, x0 + cx - 2:x0 + cx + 3, 0].astype(int).mean(1)
    chin_t = int(round(target[CHIN_IDX, 1].max() * k))
    chin_o = int(round(own[CHIN_IDX, 1].max() * k))
    seg = col[chin_t - int(6 * k):chin_o + int(30 * k)]
    dark = seg < (SHADOW + SKIN) / 2
    runs = np.count_nonzero(np.diff(dark.astype(int)) == 1) + int(dark[0])
    assert runs == 1, f"{runs} dark jaw edges in {seg.tolist()}"
    first_dark = int(np.argmax(dark)) + chin_t - int(6 * k)
    # The one jaw edge follows the target chin (within the seam and the shadow's width).
    assert abs(first_dark - chin_t) <= 4 * k
    after = seg[np.nonzero(dark)[0][-1] + 1:]
    grey = (after > (SHADOW + SKIN) / 2) & (after < COLLAR - 15)
    assert grey.sum() <= 2 * k, f"grey band under the jaw: {after.tolist()}"
    # Far below the jaw the template's own collar is untouched.
    assert np.abs(col[chin_o + int(34 * k):] - COLLAR).max() <= 2


def test_neck_band_and_face_weight():
    from lipdub.render.condition import CHIN_IDX, face_weight, neck_points

    own = _face_landmarks(64, 56, 22)
    pins, band = neck_points(own, own, 128)
    assert np.allclose(band, own[CHIN_IDX, :2])          # same mouth: nothing moves
    target = own.copy()
    target[CHIN_IDX, 1] -= 6.0
    pins, band = neck_points(own, target, 128)
    assert np.allclose(band[:, 1] - own[CHIN_IDX, 1], 6.0, atol=0.5)
    assert (pins[:, 1] > band[:, 1] + 6.0).all()
    w = face_weight(target, 128)
    chin_y = int(round(target[CHIN_IDX[5], 1]))
    assert w[chin_y - 8, 64] > 0.99 and w[chin_y + 4, 64] < 0.01 and w[5, 64] > 0.99
    # Growing the mask by the band keeps the paste weight's guarantees.
    hidden, alpha = masks([own, target], 128, [band])
    h0, _ = masks([own, target], 128)
    assert (hidden >= h0).all() and hidden.sum() > h0.sum() and (alpha[hidden == 0] == 0).all()


def test_a_bank_without_a_usable_face_is_a_clear_error():
    from types import SimpleNamespace

    from lipdub.errors import NoFaceError
    from lipdub.render.reference import bank_frames

    with pytest.raises(NoFaceError, match="no frame with a usable face"):
        bank_frames(SimpleNamespace(n_frames=5, dub_weight=np.zeros(5)), limit=10)
