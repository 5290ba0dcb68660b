"""Paste-back: pixels outside the mask are untouched bit for bit; no box edge; colours matched."""

from __future__ import annotations

import numpy as np
import pytest

from lipdub.composite import match_colour, paste, paste_mask
from lipdub.render.condition import CHIN_IDX, LIPS_INNER_IDX, LIPS_OUTER_IDX, crop, masks, to_crop


def fake_landmarks(cx: float, cy: float, half_width: float, opening: float = 4.0) -> np.ndarray:
    """(478, 3) landmarks with lips on ellipses and the chin on an arc below; others at the centre."""
    lm = np.zeros((478, 3), np.float32)
    lm[:, 0], lm[:, 1] = cx, cy - half_width  # everything else sits above the mouth
    t = np.linspace(0, 2 * np.pi, len(LIPS_OUTER_IDX), endpoint=False)
    lm[LIPS_OUTER_IDX, 0] = cx - half_width * np.cos(t)
    lm[LIPS_OUTER_IDX, 1] = cy - (0.4 * half_width + opening / 2) * np.sin(t)
    lm[LIPS_INNER_IDX, 0] = cx - 0.8 * half_width * np.cos(t)
    lm[LIPS_INNER_IDX, 1] = cy - (opening / 2) * np.sin(t)
    a = np.linspace(0.15 * np.pi, 0.85 * np.pi, len(CHIN_IDX))
    lm[CHIN_IDX, 0] = cx + 1.3 * half_width * np.cos(a)
    lm[CHIN_IDX, 1] = cy + 0.4 * half_width + 1.2 * half_width * np.sin(a)
    return lm


@pytest.mark.parametrize("box", [(100, 80, 228, 208), (0, 0, 96, 96), (200, 150, 330, 280)])
def test_outside_mask_is_bit_identical(box):
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    x0, y0, x1, y1 = box
    lm = fake_landmarks((x0 + x1) / 2, (y0 + y1) / 2 - 5, (x1 - x0) / 5)
    size = 64
    _, alpha = masks([to_crop(lm, box, size)], size)
    rendered = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    out = paste(frame, rendered, alpha, box, crop(frame, box, size))
    changed = paste_mask(frame.shape, alpha, box)
    assert changed.any()
    assert np.array_equal(out[~changed], frame[~changed])
    assert not np.array_equal(out[changed], frame[changed])
    # Frame pixels outside the box are never in the mask; the crop border has zero weight.
    assert alpha[0].max() == 0 and alpha[-1].max() == 0 and alpha[:, 0].max() == 0


def test_inplace_and_copy_agree():
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (200, 200, 3), dtype=np.uint8)
    box = (40, 40, 168, 168)
    _, alpha = masks([to_crop(fake_landmarks(104, 100, 25), box, 64)], 64)
    rendered = np.full((64, 64, 3), 128, np.uint8)
    a = paste(frame, rendered, alpha, box)
    b = frame.copy()
    paste(b, rendered, alpha, box, inplace=True)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, frame)


def test_identical_render_changes_nothing():
    """Pasting the template's own crop back at the same size is (almost) lossless."""
    rng = np.random.default_rng(2)
    frame = np.clip(rng.normal(120, 20, (128, 128, 3)), 0, 255).astype(np.uint8)
    box = (0, 0, 128, 128)
    _, alpha = masks([to_crop(fake_landmarks(64, 60, 20), box, 128)], 128)
    out = paste(frame, crop(frame, box, 128), alpha, box, crop(frame, box, 128))
    assert np.abs(out.astype(int) - frame.astype(int)).max() <= 1


def test_colour_match_removes_offset():
    template = np.full((64, 64, 3), 100, np.uint8)
    rendered = np.full((64, 64, 3), 108, np.uint8)
    _, alpha = masks([to_crop(fake_landmarks(32, 30, 10), (0, 0, 64, 64), 64)], 64)
    matched = match_colour(rendered, template, alpha)
    assert np.allclose(matched, 100.0, atol=1e-3)
