"""The renderer's cheap paths: work only inside the paste window, float32 warp grid, half-size
seam blur, bilinear template crop. Each must give (nearly) the pixels of the full-cost path."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from test_composite import fake_landmarks

from lipdub.composite import colour_shift, paste
from lipdub.render.colour import shifted
from lipdub.render.condition import (
    CHIN_IDX,
    crop,
    face_weight,
    masks,
    neck_points,
    to_crop,
)
from lipdub.render.runtime import join_jaw, paste_roi
from lipdub.render.warp import _grid, _grid_kernel, _kernel, warp


def _mouth(side: int, size: int = 128):
    """Crop-space landmarks at ``size`` and at ``side`` of a mouth, and a wanted one with the
    chin lowered; the paste weight at ``size``."""
    own = to_crop(fake_landmarks(64, 56, 20), (0, 0, 128, 128), size)
    target = own.copy()
    target[CHIN_IDX, 1] += 5.0 * size / 128
    _, band = neck_points(own, target, size)
    _, alpha = masks([target, own], size, [np.concatenate([own[CHIN_IDX], target[CHIN_IDX], band])])
    k = side / size
    return own * k, target * k, alpha


def test_warp_of_a_window_is_the_whole_warp_cut_there():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (200, 200, 3), dtype=np.uint8)
    src = rng.uniform(40, 160, (30, 2)).astype(np.float32)
    dst = src + rng.normal(0, 3, src.shape).astype(np.float32)
    roi = (37, 181, 5, 190)
    whole = warp(img, src, dst, size=240)
    assert np.array_equal(warp(img, src, dst, size=240, roi=roi), whole[37:181, 5:190])


@pytest.mark.parametrize("box_side,side", [(495, 320), (184, 184), (100, 100), (300, 128)])
def test_crop_pixels_outside_the_paste_window_never_reach_the_frame(box_side, side):
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (box_side + 60, box_side + 40, 3), dtype=np.uint8)
    box = np.array([20, 30, 20 + box_side, 30 + box_side], np.float32)
    _, _, alpha = _mouth(side)
    rendered = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    template = crop(frame, box, side)
    y0, y1, x0, x1 = paste_roi(alpha, side)
    assert 0 < (y1 - y0) * (x1 - x0) < side * side  # a real saving on this mouth
    other = rng.integers(0, 256, rendered.shape, dtype=np.uint8)
    other[y0:y1, x0:x1] = rendered[y0:y1, x0:x1]
    a = paste(frame, rendered, alpha, box, template)
    assert np.array_equal(a, paste(frame, other, alpha, box, template))
    assert not np.array_equal(a, frame)
    assert paste_roi(np.zeros_like(alpha), side) is None


@pytest.mark.parametrize("box_side,side", [(495, 320), (184, 184), (100, 100), (300, 128), (90, 128)])
def test_colour_match_inside_the_paste_window_is_the_whole_crops(box_side, side):
    rng = np.random.default_rng(5)
    frame = cv2.GaussianBlur(rng.integers(0, 256, (box_side + 60, box_side + 40, 3), dtype=np.uint8),
                             (0, 0), 2)
    box = np.array([20, 30, 20 + box_side, 30 + box_side], np.float32)
    _, _, alpha = _mouth(side)
    template = crop(frame, box, side)
    rendered = np.clip(template.astype(int) + rng.integers(-20, 30, template.shape) + [6, -4, 9],
                       0, 255).astype(np.uint8)
    a_r = alpha if side == 128 else cv2.resize(alpha, (side, side), interpolation=cv2.INTER_LINEAR)
    whole = shifted(rendered, colour_shift(rendered, template, a_r))
    assert not np.array_equal(whole, rendered)
    assert np.array_equal(paste(frame, rendered, alpha, box, template), paste(frame, whole, alpha, box))


@pytest.mark.parametrize("side", [184, 320])
def test_join_jaw_in_a_window_is_the_whole_join_cut_there(side):
    rng = np.random.default_rng(2)
    own, target, alpha = _mouth(side)
    face = cv2.GaussianBlur(rng.integers(0, 256, (side, side, 3), dtype=np.uint8), (0, 0), 2)
    template = cv2.GaussianBlur(rng.integers(0, 256, (side, side, 3), dtype=np.uint8), (0, 0), 2)
    y0, y1, x0, x1 = roi = paste_roi(alpha, side)
    whole = join_jaw(face, template, own, target, alpha)
    part = join_jaw(np.ascontiguousarray(face[y0:y1, x0:x1]), template, own, target, alpha, roi)
    # The same up to the colour ring's mean (taken over the window): at most a grey level.
    assert np.abs(part.astype(int) - whole[y0:y1, x0:x1]).max() <= 1


def test_half_size_seam_weight_is_close_to_the_full_one():
    _, target, _ = _mouth(320)
    full, half = face_weight(target, 320), face_weight(target, 320, half=True)
    assert half.shape == full.shape and half.dtype == np.float32
    assert np.abs(full - half).max() < 0.06 and np.abs(full - half).mean() < 0.002


def test_float32_grid_kernel_matches_float64():
    pts = np.random.default_rng(3).uniform(0, 1, (70, 2))
    exact = _kernel(_grid(320), pts)
    assert np.abs(_grid_kernel(320, pts) - exact).max() < 1e-5


def test_fast_crop_is_bilinear_only_for_a_shrink_below_two():
    rng = np.random.default_rng(4)
    frame = cv2.GaussianBlur(rng.integers(0, 256, (600, 600, 3), dtype=np.uint8), (0, 0), 1.5)
    box = (50, 40, 545, 535)  # 495 px
    region = frame[40:535, 50:545]
    assert np.array_equal(crop(frame, box, 320, fast=True),
                          cv2.resize(region, (320, 320), interpolation=cv2.INTER_LINEAR))
    assert np.abs(crop(frame, box, 320, fast=True).astype(int) - crop(frame, box, 320)).mean() < 1.0
    # Shrinking 4x, bilinear would alias: the area filter stays.
    assert np.array_equal(crop(frame, box, 120, fast=True), crop(frame, box, 120))
