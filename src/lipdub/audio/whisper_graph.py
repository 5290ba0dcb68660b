"""Whisper's audio encoder as an ONNX graph run by onnxruntime, with the weights of the installed model.

``lipdub.audio.whisper_net`` reads the weights and holds the reference forward pass in NumPy. The
same network as an ONNX graph runs in onnxruntime's fused kernels in about half the time (a 6 s
window: ~24 ms on one core against ~50 ms), with the same states (within 1e-3 on every layer;
``tests/test_whisper_graph.py``). The weights stay float32: the motion model was trained on
float32 states, and int8 weights (onnxruntime's dynamic quantisation gave r 0.995-0.997 per layer)
would have changed its input for ~6 ms less a window.

The package ships the graph *without weights* (``models/whisper_encoder_graph.onnx``, 12 KB: the
operations, and each weight's name and shape marked as external data); at load time onnxruntime
takes the weights straight from the NumPy arrays read from ``model.bin``
(``add_external_initializers``), so no Whisper weights are shipped or written anywhere and no
``onnx`` import (0.1 s) or 30 MB graph serialisation delays the first frame. The graph is made by
``python -m lipdub.audio.whisper_graph`` (needs ``onnx``; a test checks the shipped file is what it
makes). It reads the log-mel ``mel`` (1, n_mels, 2K) and the positional encodings of its ``K``
states ``positions`` (1, K, width), so it needs no shape arithmetic; its outputs are the states
after each block and the final normed output, as ``WhisperEncoderNet`` returns them.
"""

from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path

import numpy as np

from lipdub.audio.whisper_net import WhisperEncoderNet, read_ctranslate2_variables
from lipdub.errors import InputError, MissingDependencyError

#: ONNX operator set: 17 brings LayerNormalization, 20 Gelu with the tanh form.
_OPSET = 20
#: The shipped weightless graph of Whisper tiny's encoder.
GRAPH_PATH = Path(__file__).resolve().parent.parent / "models" / "whisper_encoder_graph.onnx"
#: Arrays up to this size (the reshape targets, the attention scale) are stored in the graph.
_INLINE_SIZE = 16


def graph_weights(net: WhisperEncoderNet) -> dict[str, np.ndarray]:
    """The graph's external weights by name: ``net``'s, with each linear map stored (in, out) for
    MatMul and the convolutions (out, in, 3)."""
    w, width = net.w, net.width
    out = {}
    for name in ("conv1", "conv2"):
        out[f"{name}/weight"] = w[f"{name}/weight"].reshape(width, -1, 3)
        out[f"{name}/bias"] = w[f"{name}/bias"]
    for name, value in w.items():
        if name.endswith(("gamma", "beta")):
            out[name] = value
        elif name.startswith("layer_") and name.endswith("/bias"):
            out[name] = value
        elif name.startswith("layer_") and name.endswith("/weight"):
            out[name + "_t"] = np.ascontiguousarray(value.T)
    return {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in out.items()}


def encoder_graph(net: WhisperEncoderNet):
    """The ONNX ``ModelProto`` of ``net``'s forward pass, its weights (``graph_weights``) marked as
    external data by name: onnxruntime must be given them (``WhisperEncoderSession``)."""
    try:
        from onnx import TensorProto, helper, numpy_helper
    except ImportError as exc:
        raise MissingDependencyError("onnx is not installed; run `pip install onnx`") from exc

    weights = graph_weights(net)
    width, heads = net.width, net.heads
    head_dim = width // heads
    initializers, nodes = [], []

    def weight(name: str) -> str:
        tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=weights[name].shape,
                             data_location=TensorProto.EXTERNAL)
        # A location is required of external data; the session is given the arrays, never reads it.
        tensor.external_data.add(key="location", value="model.bin")
        initializers.append(tensor)
        return name

    def const(name: str, value) -> str:
        assert np.size(value) <= _INLINE_SIZE
        initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(kind: str, inputs: list[str], n_out: int = 1, **attributes) -> str | list[str]:
        outputs = [f"{kind.lower()}_{len(nodes)}_{j}" for j in range(n_out)]
        nodes.append(helper.make_node(kind, inputs, outputs, **attributes))
        return outputs[0] if n_out == 1 else outputs

    def gelu(x: str) -> str:
        return op("Gelu", [x], approximate="tanh")

    def layer_norm(x: str, prefix: str) -> str:
        return op("LayerNormalization", [x, weight(prefix + "gamma"), weight(prefix + "beta")],
                  axis=-1, epsilon=1e-5)

    def linear(x: str, prefix: str) -> str:
        return op("Add", [op("MatMul", [x, weight(prefix + "weight_t")]), weight(prefix + "bias")])

    def conv(x: str, name: str, stride: int) -> str:
        return op("Conv", [x, weight(name + "/weight"), weight(name + "/bias")],
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
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)],
                              producer_name="lipdub.audio.whisper_graph")
    model.ir_version = 9  # what onnxruntime >= 1.17 reads
    return model


class WhisperEncoderSession:
    """``__call__(mel)`` as ``WhisperEncoderNet``'s, run by onnxruntime on ``threads`` threads.

    Worker threads do not spin between runs: in generate the encoder shares the machine with the
    video encoder, and a spinning worker took its core (as OpenBLAS's did)."""

    def __init__(self, net: WhisperEncoderNet, threads: int = 1, graph: bytes | None = None):
        import onnxruntime as ort

        self.width, self.n_mels, self.max_states = net.width, net.n_mels, net.max_states
        self._positions = net.w["position_encodings/encodings"]
        # onnxruntime reads the arrays in place: they must live as long as the session.
        self._weights = graph_weights(net)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        names = list(self._weights)
        options.add_external_initializers(
            names, [ort.OrtValue.ortvalue_from_numpy(self._weights[n]) for n in names])
        if graph is None:
            graph = GRAPH_PATH.read_bytes()
        try:
            self._session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types for a graph that does not fit
            raise InputError(f"the Whisper model does not fit lipdub's tiny encoder graph "
                             f"({str(exc).splitlines()[0][:200]})") from exc

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
    """One session per model folder and thread count per process (~0.05 s to make);
    onnxruntime sessions may be run from several threads at once."""
    net = WhisperEncoderNet(read_ctranslate2_variables(Path(model_dir) / "model.bin"))
    return WhisperEncoderSession(net, threads)


def main(argv=None) -> int:
    """Write the weightless graph for the installed Whisper tiny (the shipped file by default)."""
    import argparse

    from lipdub.audio.whisper import resolve_model_path

    ap = argparse.ArgumentParser(prog="python -m lipdub.audio.whisper_graph", description=main.__doc__)
    ap.add_argument("--model", help="a CTranslate2 Whisper tiny folder (default: the bundled tiny.en)")
    ap.add_argument("--out", type=Path, default=GRAPH_PATH)
    args = ap.parse_args(argv)
    folder = resolve_model_path(args.model)
    net = WhisperEncoderNet(read_ctranslate2_variables(folder / "model.bin"))
    data = encoder_graph(net).SerializeToString()
    partial = args.out.with_name(args.out.name + ".partial")
    partial.write_bytes(data)
    partial.replace(args.out)
    print(f"wrote {args.out} ({len(data)} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
