"""render.colour: the saturating-add shift and masked-sum means against their plain definitions."""

import cv2
import numpy as np

from lipdub.render.colour import MIN_RING, ring_shift, shifted


def test_shifted_is_the_rounded_clipped_shift():
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
    image[0, :3] = [[0, 0, 0], [255, 255, 255], [3, 250, 128]]
    shift = np.array([-7.3, 4.6, 11.9])
    ref = np.clip(np.rint(image.astype(np.float64) + shift), 0, 255).astype(np.uint8)
    assert (shifted(image, shift) == ref).all()
    assert (shifted(image[:, 5:20], shift) == ref[:, 5:20]).all()  # a window (a view)
    assert shifted(image, None) is image


def test_ring_shift_is_the_difference_of_masked_means():
    rng = np.random.default_rng(6)
    rendered = rng.integers(0, 256, (50, 60, 3), dtype=np.uint8)
    template = np.clip(rendered.astype(np.int16) + [5, -3, 20], 0, 255).astype(np.uint8)
    ring = rng.random((50, 60)) < 0.3
    got = ring_shift(rendered, template, ring, max_shift=12.0)
    m = ring.astype(np.uint8)
    want = np.clip(np.subtract(cv2.mean(template, m)[:3], cv2.mean(rendered, m)[:3]), -12, 12)
    assert np.allclose(got, want, atol=1e-9) and got[2] == 12.0
    assert np.allclose(ring_shift(rendered, template, ring.astype(np.float32)), want, atol=1e-9)
    few = np.zeros_like(ring)
    few[0, :MIN_RING - 1] = True
    assert ring_shift(rendered, template, few) is None
