"""The uint8 blend (render.blend) against a float blend: within a level, exact at 0 and 1."""

import cv2
import numpy as np

from lipdub.render.blend import blend_u8, weight_u8


def test_blend_u8_matches_float_blend_and_is_exact_at_the_ends():
    rng = np.random.default_rng(3)
    fg = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    bg = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    w = rng.random((37, 53)).astype(np.float32)
    w[:5] = 0.0
    w[-5:] = 1.0
    w[10, :10] = 0.4 / 255.0  # below half a level: the background's own pixel
    out = blend_u8(fg, bg, w)
    ref = np.rint(fg * w[..., None] + bg * (1.0 - w[..., None]))
    assert out.dtype == np.uint8 and out.shape == fg.shape
    assert np.abs(out.astype(np.int16) - ref).max() <= 1
    assert (out[:5] == bg[:5]).all() and (out[-5:] == fg[-5:]).all()
    assert (out[10, :10] == bg[10, :10]).all()
    # the same with 8-bit weights, and on non-contiguous views
    assert (blend_u8(fg, bg, weight_u8(w)) == out).all()
    assert (blend_u8(fg[:, ::2], bg[:, ::2], np.ascontiguousarray(w[:, ::2])) == out[:, ::2]).all()
    # within a level of cv2.blendLinear, which paste used before
    old = cv2.blendLinear(fg, bg, w, 1.0 - w)
    assert np.abs(out.astype(np.int16) - old).max() <= 1
