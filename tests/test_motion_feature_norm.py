"""Per-recording mean normalisation of the Whisper input (lipdub.motion.feature_norm).

Synthetic inputs only (no model, no ../shared)."""

from __future__ import annotations

import numpy as np
import pytest

from lipdub.motion import feature_norm as fn
from lipdub.motion import representation as rep


def make_input(n: int, seed: int = 0, speech=None) -> np.ndarray:
    """A random prepared input ``(n, INPUT_DIM)`` whose last column is voice activity."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, rep.INPUT_DIM)).astype(np.float32)
    x[:, -1] = 1.0 if speech is None else speech
    return x


@pytest.mark.parametrize("mode", ["utterance", "causal"])
def test_a_constant_offset_of_the_voice_is_removed(mode):
    x = make_input(200)
    offset = np.zeros(rep.INPUT_DIM, np.float32)
    offset[:rep.WHISPER_DIM] = np.linspace(-3, 3, rep.WHISPER_DIM)
    a = fn.normalise_input(x, mode, seconds=2.0)
    b = fn.normalise_input(x + offset, mode, seconds=2.0)
    np.testing.assert_allclose(a, b, atol=1e-4)
    # ... and the normalised states are not just the raw ones (the mean did come out).
    assert np.abs(fn.normalise_input(x + offset, mode)[:, :rep.WHISPER_DIM]
                  - (x + offset)[:, :rep.WHISPER_DIM]).mean() > 1.0


def test_only_the_whisper_columns_change():
    x = make_input(50, speech=(np.arange(50) % 7 > 2).astype(np.float32))
    for mode in ("utterance", "causal"):
        y = fn.normalise_input(x, mode)
        np.testing.assert_array_equal(y[:, rep.WHISPER_DIM:], x[:, rep.WHISPER_DIM:])
    assert fn.normalise_input(x, "none") is x


def test_utterance_mean_is_over_speech_frames():
    speech = np.r_[np.zeros(100), np.ones(100)].astype(np.float32)
    x = make_input(200, speech=speech)
    x[:100, :rep.WHISPER_DIM] += 50.0   # loud silence: it must barely move the mean
    y = fn.normalise_input(x, "utterance")
    assert abs(y[100:, :rep.WHISPER_DIM].mean()) < 1.5   # weight 0.02 x 100 frames vs 100


def test_causal_mean_uses_only_past_frames():
    x = make_input(120, seed=1)
    full = fn.normalise_input(x, "causal", seconds=1.0)
    changed = x.copy()
    changed[60:, :rep.WHISPER_DIM] += 10.0   # the future changes...
    part = fn.normalise_input(changed, "causal", seconds=1.0)
    np.testing.assert_allclose(part[:60], full[:60], atol=1e-5)   # ...frames before it do not
    assert np.abs(part[60:] - full[60:]).max() > 1.0
    # Streaming in chunks (each chunk's mean carried from the previous frames) equals a prefix.
    np.testing.assert_allclose(fn.normalise_input(x[:30], "causal", seconds=1.0), full[:30], atol=1e-5)


def test_running_mean_matches_its_definition():
    rng = np.random.default_rng(3)
    x, w = rng.normal(size=(40, 3)), rng.uniform(0.1, 1.0, 40)
    d = np.exp(-1 / 5.0)
    t = 25
    k = d ** (t - np.arange(t + 1))
    expect = (k[:, None] * w[:t + 1, None] * x[:t + 1]).sum(0) / (k * w[:t + 1]).sum()
    np.testing.assert_allclose(fn.running_mean(x, w, 5.0)[t], expect, rtol=1e-10)
    # An infinite time constant is the cumulative weighted mean.
    cum = fn.running_mean(x, w, np.inf)[t]
    np.testing.assert_allclose(cum, (w[:t + 1, None] * x[:t + 1]).sum(0) / w[:t + 1].sum(), rtol=1e-10)


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError):
        fn.normalise_input(make_input(5), "global")


def test_mel_columns_are_normalised_only_when_asked():
    x = make_input(80)
    x[:, rep.WHISPER_DIM:-1] += 7.0   # a louder recording: every log-mel bin up
    keep = fn.normalise_input(x, "utterance")
    np.testing.assert_array_equal(keep[:, rep.WHISPER_DIM:], x[:, rep.WHISPER_DIM:])
    cmn = fn.normalise_input(x, "utterance", parts="whisper+mel")
    assert abs(cmn[:, rep.WHISPER_DIM:-1].mean()) < 1e-4
    np.testing.assert_array_equal(cmn[:, -1], x[:, -1])   # voice activity untouched
