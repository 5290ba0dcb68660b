"""Training internals: speaker-balanced windows, augmented views and offset re-pairing.

Synthetic clips only (no model training, no ../shared)."""

from __future__ import annotations

import numpy as np

from lipdub.motion import training as tr
from lipdub.motion.dataset import Clip


def clip(name: str, speaker: str, n: int, value: float, views=()) -> Clip:
    x = np.full((n, 4), value, np.float32)
    c = Clip(name, speaker, "0" * 64, x, np.ones(n, np.float32), np.zeros(n, np.float32),
             np.zeros((n, 478, 3), np.float32), views=[np.full((n, 4), v, np.float32) for v in views])
    c.target = np.tile(np.arange(n, dtype=np.float32)[:, None], (1, 6))
    return c


def test_augmented_views_are_read_only_as_often_as_asked():
    clips = [clip("a", "s1", 80, 0.0, views=(1.0, 2.0)), clip("b", "s2", 80, 10.0, views=(11.0,))]
    sampler = tr.Sampler(clips, window=16, r=3, rng=np.random.default_rng(0))
    originals = {0.0, 10.0}
    never = sampler.batch(64, augment_p=0.0)[0].numpy()[:, 0, 0]
    assert set(never) <= originals
    always = sampler.batch(64, augment_p=1.0)[0].numpy()[:, 0, 0]
    assert not set(always) & originals and set(always) == {1.0, 2.0, 11.0}
    half = sampler.batch(400, augment_p=0.5)[0].numpy()[:, 0, 0]
    assert 0.35 < np.isin(half, list(originals)).mean() < 0.65
    # A clip without views always reads its own audio.
    plain = tr.Sampler([clip("c", "s3", 80, 5.0)], 16, 3, np.random.default_rng(1))
    assert set(plain.batch(16, augment_p=1.0)[0].numpy()[:, 0, 0]) == {5.0}


def test_windows_pair_input_and_target_frames():
    c = clip("a", "s1", 60, 0.0)
    c.x = np.arange(60, dtype=np.float32)[:, None].repeat(4, 1)
    sampler = tr.Sampler([c], window=16, r=3, rng=np.random.default_rng(2))
    x, y, m = (t.numpy() for t in sampler.batch(8))
    # Input frame r + k (after the left context) is the frame whose target is y[k].
    np.testing.assert_array_equal(x[:, 3:-3, 0], y[:, :, 0])
    assert m.all()


def test_shifting_a_clip_shifts_its_views_with_its_audio():
    c = clip("a", "s1", 50, 0.0, views=(1.0,))
    c.x[:, 0] = c.views[0][:, 0] = np.arange(50)
    later = tr.shift_clip(c, 3)   # the real mouth moves 3 frames after the audio
    assert later.n == 47 and len(later.views[0]) == 47 and len(later.target) == 47
    np.testing.assert_array_equal(later.x[:, 0], later.views[0][:, 0])
    np.testing.assert_array_equal(later.target[:, 0], np.arange(3, 50))
    earlier = tr.shift_clip(c, -2)
    np.testing.assert_array_equal(earlier.views[0][:, 0], np.arange(2, 50))
