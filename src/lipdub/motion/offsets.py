"""Per-clip audio/video offsets and training-quality checks, from out-of-fold predictions only.

A first-pass cross-validation (every fold predicted by models that never saw it) gives each clip a
prediction made without its speaker. From it:

- the clip's A/V offset: the lag that best correlates prediction and real aperture, applied to the
  clip *as training data* only when it is clearly non-zero (``MIN_LAG`` ... below);
- whether the clip is fit to train on: a face whose mouth the audio does not drive (a host or
  laughter over the speaker, a side view, dubbed audio) gives a near-zero correlation at every lag,
  and a clip with hardly any voice activity has nothing to teach.

Benchmarks score every held-out clip at its original pairing: that is the headline figure.
``motion_eval`` and ``sync_eval`` also report a second one with the clip re-paired by its offset
(``r0_offsets``); it shows how much of the gap is the clip's own A/V offset, but it is not a clean
figure, since the offset was chosen by looking at that clip's real mouth.
"""

from __future__ import annotations

import numpy as np

from lipdub.motion import representation as rep
from lipdub.motion import training as tr

#: A lag is "clearly non-zero" when it is at least MIN_LAG frames, improves r by MIN_GAIN to at
#: least MIN_R, is a real peak (not the search's edge, MAX_LAG) and the clip has MIN_FRAMES to
#: trust it (on 1-s clips a random lag often wins).
MIN_LAG, MIN_GAIN, MIN_R, MAX_LAG, MIN_FRAMES = 2, 0.1, 0.3, 10, 50
#: Lags beyond NEAR_LAG (up to MAX_LAG: TV clips run 160-280 ms late) are trusted only on clips of
#: LONG_FRAMES or more: on a 3-s GRID sentence a far lag is usually a chance peak.
NEAR_LAG, LONG_FRAMES = 6, 150
#: Training-quality limits: best-lag r of the out-of-fold prediction, share of voiced frames.
MIN_TRAIN_R, MIN_SPEECH = 0.15, 0.2


def speech_fraction(vad: np.ndarray) -> float:
    from lipdub.audio.vad import speech_mask

    return float(np.mean(speech_mask(np.asarray(vad, np.float32)))) if len(vad) else 0.0


def offset_table(clips, oof: dict[str, np.ndarray]) -> dict[str, dict]:
    """Per clip: best lag, r there and at 0, whether it is shifted, whether it is trained on."""
    table = {}
    for c in clips:
        if c.name not in oof:
            continue
        lag, r_lag, r0 = tr.best_lag(rep.aperture(oof[c.name]), c.aperture, MAX_LAG)
        trusted = c.n >= (LONG_FRAMES if abs(lag) > NEAR_LAG else MIN_FRAMES)
        clear = (MIN_LAG <= abs(lag) < MAX_LAG and r_lag - r0 >= MIN_GAIN and r_lag >= MIN_R
                 and trusted)
        speech = speech_fraction(c.vad)
        env_r = tr.pearson(c.env, c.aperture)
        why = []
        used_r = r_lag if clear else r0
        if r_lag < MIN_TRAIN_R:
            why.append(f"out-of-fold r {r_lag:.2f} at its best lag: audio does not drive this mouth")
        elif used_r < MIN_TRAIN_R:
            why.append(f"out-of-fold r {used_r:.2f} at the pairing it would train with "
                       f"(best lag {lag:+d} not trusted)")
        if abs(lag) == MAX_LAG and r_lag - r0 >= MIN_GAIN and trusted:
            why.append(f"best lag at the search's edge ({lag:+d} frames): offset unknown")
        if speech < MIN_SPEECH:
            why.append(f"voice activity in {speech:.0%} of frames")
        table[c.name] = {"speaker": c.speaker, "lag": int(lag), "r_at_lag": round(r_lag, 3),
                         "r_at_0": round(r0, 3), "frames": c.n, "shifted": bool(clear),
                         "speech": round(speech, 3), "envelope_r": round(env_r, 3),
                         "train": not why, "why": "; ".join(why)}
    return table


def apply_offsets(clips, table: dict) -> list:
    """Clips re-paired by their offset where the table says it is clearly non-zero."""
    return [tr.shift_clip(c, table[c.name]["lag"]) if table.get(c.name, {}).get("shifted") else c
            for c in clips]


def excluded(table: dict) -> set[str]:
    return {name for name, row in table.items() if not row.get("train", True)}


def speech_mask_of(vad: np.ndarray) -> np.ndarray:
    """Frames with voice on (hysteresis mask), as booleans."""
    from lipdub.audio.vad import speech_mask

    return np.asarray(speech_mask(np.asarray(vad, np.float32)), bool)
