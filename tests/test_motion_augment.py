"""Training-time audio augmentation keeps the timing the mouth is learned from."""

from __future__ import annotations

import numpy as np
import pytest

from fixtures import espeak
from lipdub.audio import load_audio
from lipdub.motion import augment

SR = 16000


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> np.ndarray:
    wav = espeak("Bob bought a big blue boat, then he painted it bright red.",
                 tmp_path_factory.mktemp("aug") / "s.wav")
    return load_audio(wav)


def envelope(x: np.ndarray, hop: int = 80) -> np.ndarray:
    n = len(x) // hop
    return np.log(np.sqrt((x[:n * hop].reshape(n, hop) ** 2).mean(1)) + 1e-5)


def envelope_lag_ms(x: np.ndarray, ref: np.ndarray) -> float:
    ex, er = envelope(x), envelope(ref)
    scores = {k: np.corrcoef(ex[40 + k:len(er) - 40 + k], er[40:-40])[0, 1] for k in range(-20, 21)}
    return max(scores, key=scores.get) * 80 / SR * 1000


def dominant_pitch(x: np.ndarray) -> float:
    """Median autocorrelation pitch (Hz) over voiced 40 ms frames."""
    out = []
    for s in range(0, len(x) - 640, 320):
        f = x[s:s + 640] - x[s:s + 640].mean()
        if np.sqrt((f ** 2).mean()) < 0.02:
            continue
        ac = np.correlate(f, f, "full")[639:]
        lo, hi = SR // 400, SR // 60
        out.append(SR / (lo + int(np.argmax(ac[lo:hi]))))
    return float(np.median(out))


@pytest.mark.parametrize("semitones", [-4.0, -2.0, 2.0, 4.0])
def test_pitch_shift_moves_pitch_not_time(speech, semitones):
    shifted = augment.pitch_shift(speech, semitones)
    assert len(shifted) == len(speech)
    # atempo alone moves the signal by 10-20 ms; after realignment it sits within 5 ms.
    assert abs(envelope_lag_ms(shifted, speech)) <= 5
    ratio = dominant_pitch(shifted) / dominant_pitch(speech)
    assert ratio == pytest.approx(2 ** (semitones / 12), rel=0.08)


def test_realign_undoes_a_known_shift(speech):
    late = np.concatenate([np.zeros(320, np.float32), speech[:-320]])  # 20 ms late
    back = augment.realign(late, speech)
    assert abs(envelope_lag_ms(back, speech)) <= 2.5
    assert abs(envelope_lag_ms(late, speech)) >= 15


def test_views_are_deterministic_same_length_and_in_time(speech):
    a, b = augment.augmented_audio(speech, 7), augment.augmented_audio(speech, 7)
    np.testing.assert_array_equal(a, b)
    views = [augment.augmented_audio(speech, seed) for seed in range(6)]
    assert all(len(v) == len(speech) and v.dtype == np.float32 for v in views)
    assert all(np.abs(v).max() <= 1.0 for v in views)
    assert len({v.tobytes() for v in views}) == 6  # each seed its own view
    # Under a video frame (40 ms) each; a strong reverb's tail can pull the loudness envelope
    # ~20 ms late (onsets stay put), the other changes do not move it.
    lags = [abs(envelope_lag_ms(v, speech)) for v in views]
    assert max(lags) <= 25 and np.mean(lags) <= 10, lags


def test_noise_and_codec_keep_length_and_add_the_asked_change(speech):
    rng = np.random.default_rng(0)
    noisy = augment.noise(speech, rng)
    residual = noisy - speech
    snr = 10 * np.log10((speech ** 2).mean() / (residual ** 2).mean())
    assert 5 <= snr <= 25 and len(noisy) == len(speech)
    coded = augment.codec(speech, rng)
    assert len(coded) == len(speech) and not np.array_equal(coded, speech)
    assert abs(envelope_lag_ms(coded, speech)) <= 5


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_change_moves_time_and_pitch_together(speech, factor):
    out = augment.speed_change(speech, factor)
    assert abs(len(out) - len(speech) / factor) <= 1
    assert dominant_pitch(out) == pytest.approx(dominant_pitch(speech) * factor, rel=0.06)
    # The copy's loudness at t is the original's at t * factor, not at t.
    e_out, e_ref = envelope(out), envelope(speech)
    src = np.arange(len(e_out)) * factor
    ok = src <= len(e_ref) - 1
    on_time = np.corrcoef(e_out[ok], np.interp(src[ok], np.arange(len(e_ref)), e_ref))[0, 1]
    m = min(len(e_out), len(e_ref))
    unchanged = np.corrcoef(e_out[:m], e_ref[:m])[0, 1]
    assert on_time > 0.95 and on_time > unchanged + 0.1
