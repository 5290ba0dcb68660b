"""Phone tracks from PocketSphinx's all-phone decoder: a training-only input for an ablation.

The issue asks whether a phone recogniser whose weights ship in a pip package adds to the Whisper
states. ``pocketsphinx`` (5.x wheels) bundles its US-English acoustic model and a phone bigram
(``en-us-phone.lm.bin``), so it decodes offline. Its all-phone mode returns one best phone
sequence with 10 ms boundaries; per video frame the input is the share of the frame's span (one
frame period centred on ``i / fps``, as the other features are) that each phone covers, so it sums
to 1 and a boundary inside a frame splits it.

Only ``python -m lipdub.motion.train --phones`` reads it (cross-validation runs; shipping with it
is refused, because ``MotionModel`` does not compute phones). The package is not a dependency of
lipdub's core: ``pip install -e ".[phones]"`` installs it (pinned) for that ablation.
"""

from __future__ import annotations

import os

import numpy as np

#: CMU's 39 phones, then silence; fillers and noise (``+NSN+``, ``+SPN+``, ...) go to the last slot.
PHONES = ("AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH",
          "IH", "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH",
          "UH", "UW", "V", "W", "Y", "Z", "ZH", "SIL", "<noise>")
#: Bump when the track's recipe changes: cached tracks of another version are made again.
PHONES_VERSION = 2
SAMPLE_RATE = 16000
_SPHINX_FRAME = 0.01  # seconds per decoder frame
_DECODER = []


def _decoder():
    try:
        from pocketsphinx import Config, Decoder, get_model_path
    except ImportError as exc:  # not a lipdub dependency: only this ablation needs it
        raise SystemExit('--phones needs PocketSphinx: pip install -e ".[phones]"') from exc
    if not _DECODER:
        model = get_model_path()
        # The settings usual for Sphinx phone decoding (a language weight of 2, wide beams). With the
        # defaults the decoder misses phones: on 4.4 s of espeak-ng speech it found 19 segments and
        # silence in 67 % of the frames, against 47 and 37 % with these (defaults: PHONES_VERSION 1).
        config = Config(lm=None, hmm=os.path.join(model, "en-us", "en-us"),
                        allphone=os.path.join(model, "en-us", "en-us-phone.lm.bin"),
                        lw=2.0, beam=1e-20, pbeam=1e-20, loglevel="FATAL")
        _DECODER.append(Decoder(config))
    return _DECODER[0]


def phone_segments(audio: np.ndarray) -> list[tuple[str, float, float]]:
    """``(phone, start s, end s)`` of the best all-phone path through ``audio`` (16 kHz mono float)."""
    pcm = (np.clip(np.asarray(audio, np.float32), -1.0, 1.0) * 32767).astype(np.int16)
    decoder = _decoder()
    decoder.start_utt()
    decoder.process_raw(pcm.tobytes(), full_utt=True)
    decoder.end_utt()
    return [(seg.word, seg.start_frame * _SPHINX_FRAME, (seg.end_frame + 1) * _SPHINX_FRAME)
            for seg in decoder.seg()]


def phone_track(segments: list[tuple[str, float, float]], n_frames: int, fps: float = 25.0) -> np.ndarray:
    """``(n_frames, len(PHONES))`` float32: per frame, the share of its span each phone covers.

    A frame no segment reaches (the decoder's output ends early) counts as silence."""
    index = {p: i for i, p in enumerate(PHONES)}
    out = np.zeros((n_frames, len(PHONES)), np.float32)
    lo = (np.arange(n_frames) - 0.5) / fps
    hi = lo + 1.0 / fps
    for phone, start, end in segments:
        overlap = np.clip(np.minimum(hi, end) - np.maximum(lo, start), 0.0, None)
        out[:, index.get(phone, len(PHONES) - 1)] += overlap * fps
    covered = out.sum(1)
    out[:, index["SIL"]] += np.clip(1.0 - covered, 0.0, None)
    return out / np.maximum(out.sum(1, keepdims=True), 1e-6)
