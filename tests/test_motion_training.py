"""Training internals: speaker-balanced windows, augmented views and offset re-pairing.

Synthetic clips only (no model training, no ../shared)."""

from __future__ import annotations

import numpy as np

from lipdub.motion import training as tr
from lipdub.motion.dataset import Clip
from lipdub.motion.representation import N_DIMS


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
    x, y, m, _ = (t.numpy() for t in sampler.batch(8))
    # Input frame r + k (after the left context) is the frame whose target is y[k].
    np.testing.assert_array_equal(x[:, 3:-3, 0], y[:, :, 0])
    assert m.all()


def test_each_window_comes_with_its_speaker():
    a, b = clip("a", "s1", 40, 0.0), clip("b", "s2", 40, 0.0)
    a.x[:], b.x[:] = 1.0, 2.0
    sampler = tr.Sampler([b, a], window=8, r=2, rng=np.random.default_rng(0))
    x, _, _, speakers = sampler.batch(32)
    assert sampler.speakers == ["s1", "s2"]
    np.testing.assert_array_equal(x[:, 0, 0].numpy(), speakers.numpy() + 1.0)
    assert set(speakers.tolist()) == {0, 1}


def test_shifting_a_clip_shifts_its_views_with_its_audio():
    c = clip("a", "s1", 50, 0.0, views=(1.0,))
    c.x[:, 0] = c.views[0][:, 0] = np.arange(50)
    later = tr.shift_clip(c, 3)   # the real mouth moves 3 frames after the audio
    assert later.n == 47 and len(later.views[0]) == 47 and len(later.target) == 47
    np.testing.assert_array_equal(later.x[:, 0], later.views[0][:, 0])
    np.testing.assert_array_equal(later.target[:, 0], np.arange(3, 50))
    earlier = tr.shift_clip(c, -2)
    np.testing.assert_array_equal(earlier.views[0][:, 0], np.arange(2, 50))


def test_speed_views_follow_their_original_out_of_training():
    a, b = clip("a", "s1", 40, 0.0), clip("b", "s2", 40, 1.0)
    fast = clip("a~speed1.1", "s1", 36, 0.0)
    fast.meta["base"] = "a"
    fold_of = {"s1": 0, "s2": 1}
    assert tr.training_set([a, b, fast], fold_of, {0, 1}) == [a, b, fast]
    # Left out with its original (the offset table refused "a"), and with its speaker's fold.
    assert tr.training_set([a, b, fast], fold_of, {0, 1}, exclude={"a"}) == [b]
    assert tr.training_set([a, b, fast], fold_of, {1}) == [b]


def test_speed_clip_resamples_the_mouth_with_the_audio(tmp_path, monkeypatch):
    from scipy.io import wavfile

    from lipdub.motion import dataset as ds

    wav = tmp_path / "a.wav"
    wavfile.write(wav, 16000, np.zeros(16000 * 2, np.float32))   # 2 s: 50 frames
    seen = {}

    def features(audio, n):
        seen["samples"], seen["n"] = len(audio), n
        return {"x": np.zeros((n, 4), np.float32), "vad": np.ones(n, np.float32),
                "env": np.zeros(n, np.float32)}

    monkeypatch.setattr(ds, "clip_features", features)
    c = clip("a.mp4", "s1", 50, 0.0)
    c.meta["path"] = str(wav)
    fast = ds.speed_clip(c, 1.25, tmp_path)
    # 1.25x as fast: 40 frames from 25 600 samples; frame i shows the original's instant 1.25 i.
    assert seen == {"samples": 25600, "n": 40} and fast.n == 40
    np.testing.assert_allclose(fast.target[:, 0], np.minimum(np.arange(40) * 1.25, 49), atol=1e-5)
    assert fast.name == "a.mp4~speed1.25" and fast.meta["base"] == "a.mp4" and fast.speaker == "s1"
    # The original's offset of 5 frames (mouth later) is 4 frames of the faster copy.
    late = ds.speed_clip(c, 1.25, tmp_path / "other", lag=5)
    assert late.n == 36
    np.testing.assert_allclose(late.target[:, 0], np.minimum(np.arange(4, 40) * 1.25, 49), atol=1e-5)


def test_closure_term_counts_only_opening_over_real_closures():
    import torch

    real = torch.tensor([[0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0]])
    m = torch.ones_like(real)
    assert tr.closure_miss(real.clone(), real, m).item() == 0
    # Closing more than the real mouth, or opening where it is open, costs nothing ...
    assert tr.closure_miss(real - 0.5, real, m).item() == 0
    assert tr.closure_miss(real * 2, real, m).item() == 0
    # ... opening where it is shut does, and masked frames do not count.
    open_at_closure = real.clone()
    open_at_closure[0, 3] = 0.8
    assert tr.closure_miss(open_at_closure, real, m).item() > 0
    m[0, 3] = 0
    assert tr.closure_miss(open_at_closure, real, m).item() == 0


def test_speaker_scaling_gives_every_speaker_the_median_spread_within_limits():
    def talking(name, speaker, amplitude, n=100):
        c = clip(name, speaker, n, 0.0)
        rng = np.random.default_rng(len(name))
        c.target = (rng.normal(0, 1, (n, N_DIMS)) * amplitude).astype(np.float32)
        return c

    clips = [talking("a1", "a", 1.0), talking("a2", "a", 1.0), talking("b", "b", 1.6),
             talking("c", "c", 0.1)]
    spread = lambda c: float(np.std(c.aperture))
    every = lambda c: np.ones(c.n, bool)
    scaled = tr.speaker_scaled(clips, every)
    target = np.median([np.std(np.concatenate([c.aperture for c in clips if c.speaker == s]))
                        for s in "abc"])
    assert abs(spread(scaled[2]) - target) < 0.02 * target            # b shrunk to the median
    assert abs(spread(scaled[0]) / spread(clips[0]) - spread(scaled[1]) / spread(clips[1])) < 1e-6
    assert np.isclose(spread(scaled[3]), spread(clips[3]) * tr.SCALE_LIMITS[1])  # c: at most x2
    assert clips[2].target is not scaled[2].target and np.std(clips[2].aperture) > target  # copies


def test_every_loss_term_together_still_learns_a_learnable_mouth():
    """A small net with the correlation, spread, closure, velocity and speaker-adversarial terms
    all on still fits a mouth that follows its input (a term that breaks the loss or its gradient
    would not)."""
    from lipdub.motion import representation as rep

    rng = np.random.default_rng(0)
    w = rep.aperture_vector()
    clips = []
    for k in range(4):
        n = 120
        x = rng.normal(0, 1, (n, rep.INPUT_DIM)).astype(np.float32)
        drive = np.convolve(x[:, 0], np.ones(3) / 3, mode="same")
        c = clip(f"c{k}", f"s{k}", n, 0.0)
        c.x = x
        c.target = (np.maximum(drive, 0)[:, None] * w[None] / (w @ w)).astype(np.float32)
        clips.append(c)
    cfg = tr.TrainConfig(steps=150, batch=8, window=32, width=32, dilations=(1, 2), n_code=4,
                         corr_weight=3.0, spread_weight=1.0, closure_weight=1.0, velocity_weight=1.0,
                         adversary_weight=0.1, time_mask=0)
    net = tr.fit(clips, cfg, seed=0)
    r = [tr.pearson(rep.aperture(tr.predict(net, c.x)), c.aperture) for c in clips]
    assert np.mean(r) > 0.6
