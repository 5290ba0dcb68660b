"""Features computed as generate reaches them equal extract_features' bit for bit."""

from __future__ import annotations

import numpy as np

from lipdub.audio.mel import log_mel, mel_windows


def test_mel_windows_cut_on_demand_equal_the_whole_array():
    from lipdub.features_on_demand import MelWindows

    wav = np.random.default_rng(0).normal(0, 0.1, 16000 * 3).astype(np.float32)
    whole = mel_windows(wav, 25.0, 75)
    lazy = MelWindows(log_mel(wav), 25.0, 75)
    assert lazy.shape == whole.shape and len(lazy) == 75
    assert np.array_equal(lazy[10:40], whole[10:40]) and np.array_equal(lazy[3], whole[3])
    assert np.array_equal(np.asarray(lazy), whole)


def test_whisper_states_on_demand_equal_frame_features(speech_wav):
    """Over many encoder windows (cross-fades included), any slice, in any order."""
    from lipdub.audio import WhisperEncoder, load_audio
    from lipdub.features_on_demand import WhisperStates

    wav = np.tile(load_audio(speech_wav), 1 + int(50 * 16000 / len(load_audio(speech_wav))))[:16000 * 50]
    encoder = WhisperEncoder()
    n = 50 * 25
    whole = encoder.frame_features(wav, 25.0, n)
    lazy = WhisperStates(wav, 25.0, n, encoder)
    assert len(lazy.starts) >= 2
    for a, b in [(900, 1250), (0, 300), (280, 620), (600, 1000)]:
        assert np.array_equal(lazy[a:b], whole[a:b]), (a, b)
    assert np.array_equal(lazy[5], whole[5])
    assert np.array_equal(np.asarray(lazy), whole)
