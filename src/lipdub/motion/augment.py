"""Audio augmentation for training the motion model: the same words, another voice and room.

The training corpus has ~90 voices; the model meets new ones. Each augmented *view* of a clip is
its audio changed in ways that leave the mouth's timing alone, then run through the normal front
end (``lipdub.audio.extract_features``), so the network learns features of articulation rather
than of a voice, a microphone or a room:

- pitch: shifted by 1..4 semitones up or down at constant duration (ffmpeg ``asetrate`` +
  ``atempo``, then realigned to the original's loudness envelope);
- reverberation: convolution with a synthetic room response (exponentially decaying noise,
  RT60 0.15-0.7 s) mixed 20-60 % wet;
- noise: white, pink or brown, 5-25 dB below the speech;
- codec: a round trip through Opus at 12-24 kbit/s or MP3 at 32 kbit/s;
- loudness: -12..+6 dB overall.

Speed views (``speed_change``) are the one change that moves timing: the audio is resampled
(faster or slower speech, pitch moving with it, as in Kaldi's speed perturbation), and
``lipdub.motion.dataset.speed_clip`` resamples the mouth track by the same factor, so the pair
stays in sync while the speaking rate changes.

Each view draws a random subset (pitch and noise most often). ``augmented_audio`` is
deterministic for a given seed; timing is checked: the output has exactly the input's length.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np

from lipdub.audio.timing import SAMPLE_RATE

#: Bump when a view's recipe changes: cached views of another version are made again.
AUGMENT_VERSION = 1


def _ffmpeg(wav: np.ndarray, filters: str | None = None, codec: tuple[str, str, str] | None = None) -> np.ndarray:
    """``wav`` through an ffmpeg filter chain or an encode/decode round trip (16 kHz mono float)."""
    from lipdub.video import ffmpeg_exe

    base = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error"]
    raw_in = ["-f", "f32le", "-ar", str(SAMPLE_RATE), "-ac", "1", "-i", "pipe:0"]
    raw_out = ["-f", "f32le", "-ar", str(SAMPLE_RATE), "-ac", "1", "pipe:1"]
    data = np.ascontiguousarray(wav, np.float32).tobytes()
    if codec is None:
        out = subprocess.run(base + raw_in + ["-af", filters] + raw_out, input=data,
                             capture_output=True, check=True).stdout
    else:
        encoder, bitrate, suffix = codec
        with tempfile.TemporaryDirectory() as tmp:
            coded = Path(tmp) / f"a.{suffix}"
            subprocess.run(base + raw_in + ["-c:a", encoder, "-b:a", bitrate, str(coded)],
                           input=data, capture_output=True, check=True)
            out = subprocess.run(base + ["-i", str(coded)] + raw_out, capture_output=True,
                                 check=True).stdout
    return _same_length(np.frombuffer(out, np.float32), len(wav))


def _same_length(x: np.ndarray, n: int) -> np.ndarray:
    return np.pad(x, (0, max(0, n - len(x))))[:n].astype(np.float32)


def pitch_shift(wav: np.ndarray, semitones: float) -> np.ndarray:
    """Pitch (and formants) moved by ``semitones`` at the same duration."""
    factor = 2.0 ** (semitones / 12.0)
    # asetrate raises pitch and speed by ``factor``; atempo brings the speed back (it takes
    # 0.5..2 per stage; factors here stay within one stage).
    shifted = _ffmpeg(wav, f"asetrate={SAMPLE_RATE * factor:.3f},aresample={SAMPLE_RATE},"
                           f"atempo={1.0 / factor:.6f}")
    # atempo's overlap-add moves the signal by 10-20 ms (measured): put it back where it was.
    return realign(shifted, wav)


def realign(x: np.ndarray, ref: np.ndarray, max_ms: float = 40.0, hop: int = 32) -> np.ndarray:
    """``x`` shifted (zero-filled) so its loudness envelope lines up with ``ref``'s (2 ms steps)."""
    n = min(len(x), len(ref)) // hop
    if n < 8:
        return x

    def envelope(a):
        return np.log(np.sqrt((a[:n * hop].reshape(n, hop) ** 2).mean(1)) + 1e-5)

    ex, er = envelope(x), envelope(ref)
    reach = int(max_ms * SAMPLE_RATE / 1000 / hop)
    if n <= 4 * reach:
        return x
    core = slice(2 * reach, n - 2 * reach)
    scores = {k: np.corrcoef(ex[core.start + k:core.stop + k], er[core])[0, 1]
              for k in range(-reach, reach + 1)}
    lag = max(scores, key=scores.get) * hop  # x at t + lag matches ref at t
    if lag > 0:
        return np.concatenate([x[lag:], np.zeros(lag, np.float32)])
    if lag < 0:
        return np.concatenate([np.zeros(-lag, np.float32), x[:lag]])
    return x


def reverb(wav: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    from scipy.signal import fftconvolve

    rt60 = rng.uniform(0.15, 0.7)
    t = np.arange(int(rt60 * SAMPLE_RATE)) / SAMPLE_RATE
    response = rng.normal(size=len(t)) * np.exp(-6.9 * t / rt60)  # -60 dB at rt60
    response[0] = 0.0
    response /= np.sqrt((response ** 2).sum()) + 1e-9
    wet = fftconvolve(wav, response)[:len(wav)]
    mix = rng.uniform(0.2, 0.6)
    return ((1 - mix) * wav + mix * wet * (np.std(wav) / (np.std(wet) + 1e-9))).astype(np.float32)


def noise(wav: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    white = rng.normal(size=len(wav))
    colour = rng.integers(3)
    if colour:  # pink (1/f) or brown (1/f^2) power, shaped in the frequency domain
        spectrum = np.fft.rfft(white)
        f = np.maximum(np.fft.rfftfreq(len(wav)), 1.0 / len(wav))
        white = np.fft.irfft(spectrum / f ** (0.5 * colour), len(wav))
    speech_rms = np.sqrt(np.mean(wav ** 2)) + 1e-9
    snr_db = rng.uniform(5, 25)
    white *= speech_rms / (np.sqrt(np.mean(white ** 2)) + 1e-12) * 10 ** (-snr_db / 20)
    return (wav + white).astype(np.float32)


def codec(wav: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.6:
        return _ffmpeg(wav, codec=("libopus", f"{int(rng.choice([12, 16, 24]))}k", "ogg"))
    return _ffmpeg(wav, codec=("libmp3lame", "32k", "mp3"))


def augmented_audio(wav: np.ndarray, seed: int) -> np.ndarray:
    """One random view of ``wav`` (16 kHz mono float32), the same length, deterministic per seed."""
    rng = np.random.default_rng(seed)
    out = np.asarray(wav, np.float32)
    if rng.random() < 0.8:
        shift = rng.uniform(1.0, 4.0) * rng.choice([-1.0, 1.0])
        out = pitch_shift(out, shift)
    if rng.random() < 0.4:
        out = reverb(out, rng)
    if rng.random() < 0.6:
        out = noise(out, rng)
    if rng.random() < 0.3:
        out = codec(out, rng)
    out = out * 10 ** (rng.uniform(-12, 6) / 20)
    peak = np.abs(out).max()
    return (out / peak * 0.99 if peak > 0.99 else out).astype(np.float32)


def speed_change(wav: np.ndarray, factor: float) -> np.ndarray:
    """``wav`` played ``factor`` times as fast (length ``len / factor``), by polyphase resampling."""
    from fractions import Fraction

    from scipy.signal import resample_poly

    ratio = Fraction(1.0 / factor).limit_denominator(100)
    return resample_poly(np.asarray(wav, np.float64), ratio.numerator, ratio.denominator).astype(np.float32)
