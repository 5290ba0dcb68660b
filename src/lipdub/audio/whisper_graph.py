"""Whisper's audio encoder as an ONNX graph, built from the weights and run by onnxruntime.

``lipdub.audio.whisper_net`` reads the weights and holds the reference forward pass in NumPy. The
same network, built here as an ONNX graph in memory, runs in onnxruntime's fused kernels in about
half the time (a 6 s window: ~24 ms on one core against ~50 ms), with the same states (r 1.00000
on every layer; ``tests/test_whisper_graph.py``). The graph is built at load time from the installed
model (``onnx.helper``, ~0.3 s): no Whisper weights are shipped or written to disk. The weights stay
float32: the motion model was trained on float32 states, and int8 weights (onnxruntime's dynamic
quantisation gave r 0.995-0.997 per layer) would have changed its input for ~6 ms more a window.

The graph's inputs are the log-mel ``mel`` (1, n_mels, 2K) and the positional encodings of its
``K`` states ``positions`` (1, K, width), so it needs no shape arithmetic; its outputs are the
states after each block and the final normed output, as ``WhisperEncoderNet`` returns them.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from lipdub.audio.whisper_net import WhisperEncoderNet, read_ctranslate2_variables
from lipdub.errors import MissingDependencyError

#: ONNX operator set: 17 brings LayerNormalization, 20 Gelu with the tanh form.
_OPSET = 20


def encoder_graph(net: WhisperEncoderNet):
    """The ONNX ``ModelProto`` of ``net``'s forward pass (same weights, same operations)."""
    try:
        from onnx import TensorProto, helper, numpy_helper
    except ImportError as exc:
        raise MissingDependencyError("onnx is not installed; run `pip install onnx`") from exc

    w, width, heads = net.w, net.width, net.heads
    head_dim = width // heads
    initializers, nodes = [], []

    def const(name: str, value) -> str:
        initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(kind: str, inputs: list[str], n_out: int = 1, **attributes) -> str | list[str]:
        outputs = [f"{kind.lower()}_{len(nodes)}_{j}" for j in range(n_out)]
        nodes.append(helper.make_node(kind, inputs, outputs, **attributes))
        return outputs[0] if n_out == 1 else outputs

    def gelu(x: str) -> str:
        return op("Gelu", [x], approximate="tanh")

    def layer_norm(x: str, prefix: str) -> str:
        return op("LayerNormalization", [x, const(prefix + "gamma", w[prefix + "gamma"]),
                                         const(prefix + "beta", w[prefix + "beta"])],
                  axis=-1, epsilon=1e-5)

    def linear(x: str, prefix: str) -> str:
        # MatMul reads (in, out): the stored (out, in) matrix transposed once here.
        weight = const(prefix + "weight_t", np.ascontiguousarray(w[prefix + "weight"].T))
        return op("Add", [op("MatMul", [x, weight]), const(prefix + "bias", w[prefix + "bias"])])

    def conv(x: str, name: str, stride: int) -> str:
        weight = w[f"{name}/weight"].reshape(width, -1, 3)
        return op("Conv", [x, const(name + "/weight", weight), const(name + "/bias", w[name + "/bias"])],
                  kernel_shape=[3], pads=[1, 1], strides=[stride])

    x = gelu(conv(gelu(conv("mel", "conv1", 1)), "conv2", 2))
    x = op("Add", [op("Transpose", [x], perm=[0, 2, 1]), "positions"])
    split_heads = const("split_heads", np.array([0, -1, heads, head_dim], np.int64))
    join_heads = const("join_heads", np.array([0, -1, width], np.int64))
    scale = const("scale", np.array(1.0 / np.sqrt(head_dim), np.float32))
    states = []
    for i in range(net.n_blocks):
        p = f"layer_{i}/"
        q, k, v = op("Split", [linear(layer_norm(x, p + "self_attention/layer_norm/"),
                                      p + "self_attention/linear_0/")], n_out=3, axis=-1, num_outputs=3)
        q = op("Transpose", [op("Reshape", [op("Mul", [q, scale]), split_heads])], perm=[0, 2, 1, 3])
        k = op("Transpose", [op("Reshape", [k, split_heads])], perm=[0, 2, 3, 1])
        v = op("Transpose", [op("Reshape", [v, split_heads])], perm=[0, 2, 1, 3])
        attended = op("MatMul", [op("Softmax", [op("MatMul", [q, k])], axis=-1), v])
        attended = op("Reshape", [op("Transpose", [attended], perm=[0, 2, 1, 3]), join_heads])
        x = op("Add", [x, linear(attended, p + "self_attention/linear_1/")])
        h = gelu(linear(layer_norm(x, p + "ffn/layer_norm/"), p + "ffn/linear_0/"))
        x = op("Add", [x, linear(h, p + "ffn/linear_1/")])
        states.append(x)
    states.append(layer_norm(x, "layer_norm/"))
    names = [f"state{j}" for j in range(len(states))]
    nodes.extend(helper.make_node("Identity", [s], [n]) for s, n in zip(states, names))
    graph = helper.make_graph(
        nodes, "whisper_encoder",
        [helper.make_tensor_value_info("mel", TensorProto.FLOAT, [1, net.n_mels, "frames"]),
         helper.make_tensor_value_info("positions", TensorProto.FLOAT, [1, "states", width])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, "states", width]) for n in names],
        initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)])
    model.ir_version = 9  # what onnxruntime >= 1.17 reads
    return model


class WhisperEncoderSession:
    """``__call__(mel)`` as ``WhisperEncoderNet``'s, run by onnxruntime on ``threads`` threads.

    Worker threads do not spin between runs: in generate the encoder shares the machine with the
    video encoder, and a spinning worker took its core (as OpenBLAS's did)."""

    def __init__(self, net: WhisperEncoderNet, threads: int = 1):
        import onnxruntime as ort

        self.width, self.n_mels, self.max_states = net.width, net.n_mels, net.max_states
        self._positions = net.w["position_encodings/encodings"]
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(encoder_graph(net).SerializeToString(), options,
                                             providers=["CPUExecutionProvider"])

    def __call__(self, mel: np.ndarray) -> list[np.ndarray]:
        n_states = (mel.shape[1] + 1) // 2
        if n_states > self.max_states:
            raise ValueError(f"{n_states} states exceed the encoder's {self.max_states}")
        outputs = self._session.run(None, {
            "mel": np.ascontiguousarray(mel, dtype=np.float32)[None],
            "positions": self._positions[None, :n_states]})
        return [state[0] for state in outputs]


@lru_cache(maxsize=4)
def load_encoder_session(model_dir: str, threads: int = 1) -> WhisperEncoderSession:
    """One session per model folder and thread count per process (building takes ~0.3 s);
    onnxruntime sessions may be run from several threads at once."""
    net = WhisperEncoderNet(read_ctranslate2_variables(Path(model_dir) / "model.bin"))
    return WhisperEncoderSession(net, threads)
