"""Whisper's audio encoder from the weights of a CTranslate2 Whisper folder: the reader, and the
forward pass in NumPy as the reference.

CTranslate2 runs the encoder faster (int8) but returns only its last layer. The motion model reads
states of several layers: the middle ones keep more of *how* a sound is made (lip rounding,
closure) and less of *which word* it belongs to. The network is small (tiny: 4 blocks of width
384). Features are computed by ``lipdub.audio.whisper_graph``, the same network as an onnxruntime
graph (half the ~50 ms a 6 s window this NumPy pass takes on one core); this pass is what that
graph is checked against, and the plain statement of the computation.

The weights come from the ``model.bin`` the CTranslate2 converter wrote (format: version,
model name, revision, then each variable as name, shape, type, bytes); only the ``encoder/*``
variables are kept, as float32. The forward pass is OpenAI Whisper's ``AudioEncoder``:
two GELU convolutions (the second of stride 2), sinusoidal positions, pre-norm attention blocks,
a final layer norm. GELU uses the tanh form: this encoder's states are only ever read by models
trained on them, so the exact-erf version's extra cost (a third of the pass) buys nothing.
"""

from __future__ import annotations

import struct
from functools import lru_cache
from pathlib import Path

import numpy as np

from lipdub.errors import InputError

# Type ids of CTranslate2's DataType enum, in order (bfloat16 has no NumPy type: never in encoders
# converted for CPU; refused if met).
_DTYPES = (np.float32, np.int8, np.int16, np.int32, np.float16)
#: The file layout read here (CTranslate2's ``CURRENT_BINARY_VERSION`` when it was written).
_BINARY_VERSION = 6
_SQRT_2_OVER_PI = np.float32(np.sqrt(2.0 / np.pi))


def read_ctranslate2_variables(path: str | Path, prefix: str = "encoder/") -> dict[str, np.ndarray]:
    """The variables of a CTranslate2 ``model.bin`` whose names start with ``prefix`` (without it).

    The converter stores a variable that duplicates another once, as an alias: aliases into
    ``prefix`` are resolved. Quantized weights (integer matrices with ``weight_scale``s) are
    refused: this reader would need the scales, and the motion model was trained on the float
    weights' states."""
    path = Path(path)
    where: dict[str, tuple[int, tuple, int, int]] = {}
    try:
        with open(path, "rb") as f:
            def unpack(fmt: str):
                return struct.unpack(fmt, f.read(struct.calcsize(fmt)))

            def string() -> str:
                (n,) = unpack("<H")
                return f.read(n)[:-1].decode("utf-8")

            (version,) = unpack("<I")
            if version != _BINARY_VERSION:
                raise InputError(f"{path} is a CTranslate2 file of layout {version}; lipdub reads "
                                 f"{_BINARY_VERSION}")
            string()  # model name
            unpack("<I")  # revision
            (count,) = unpack("<I")
            for _ in range(count):
                name = string()
                (ndim,) = unpack("<B")
                shape = unpack(f"<{ndim}I")
                (type_id,) = unpack("<B")
                (n_bytes,) = unpack("<I")
                where[name] = (f.tell(), shape, type_id, n_bytes)
                f.seek(n_bytes, 1)
            (n_aliases,) = unpack("<I")
            aliases = dict((string(), string()) for _ in range(n_aliases))
            wanted = {name: name for name in where if name.startswith(prefix)}
            wanted.update({alias: target for alias, target in aliases.items()
                           if alias.startswith(prefix) and target in where})
            out: dict[str, np.ndarray] = {}
            for name, source in wanted.items():
                offset, shape, type_id, n_bytes = where[source]
                if type_id >= len(_DTYPES):
                    raise InputError(f"{path}: variable {source} has a type lipdub cannot read ({type_id})")
                if name.endswith("weight_scale") or (len(shape) > 1 and type_id in (1, 2, 3)):
                    raise InputError(f"{path} holds quantized weights ({source}); lipdub reads "
                                     "float16/float32 Whisper conversions only")
                f.seek(offset)
                out[name[len(prefix):]] = np.frombuffer(f.read(n_bytes), _DTYPES[type_id]).reshape(shape)
    except (OSError, struct.error, ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not a readable CTranslate2 model file: {exc}") from exc
    return out


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(_SQRT_2_OVER_PI * (x + np.float32(0.044715) * x * x * x)))


def _layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    centred = x - mean
    var = (centred * centred).mean(-1, keepdims=True)
    return centred / np.sqrt(var + np.float32(1e-5)) * gamma + beta


def _conv3(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, stride: int) -> np.ndarray:
    """Conv1d, kernel 3, padding 1: ``x`` (C, T), ``weight`` (O, C * 3) → (O, T')."""
    padded = np.pad(x, ((0, 0), (1, 1)))
    t_out = (padded.shape[1] - 3) // stride + 1
    cols = np.stack([padded[:, k:k + stride * (t_out - 1) + 1:stride] for k in range(3)], axis=1)
    return weight @ cols.reshape(-1, t_out) + bias[:, None]


class WhisperEncoderNet:
    """``__call__(mel)`` of an (80, 2K) log-mel gives the states of each block and the final
    normed output, each (K, width): ``states[i]`` is after block ``i + 1``, ``states[-1]`` the
    encoder's output (what CTranslate2's ``encode`` returns)."""

    def __init__(self, weights: dict[str, np.ndarray]):
        try:
            self._build(weights)
        except KeyError as exc:
            raise InputError(f"the CTranslate2 file lacks the Whisper encoder variable {exc}") from exc

    def _build(self, weights: dict[str, np.ndarray]) -> None:
        w = {name: np.asarray(value, dtype=np.float32) for name, value in weights.items()
             if name != "num_heads"}
        self.heads = int(weights["num_heads"])
        self.n_blocks = sum(1 for name in w if name.endswith("ffn/linear_0/bias"))
        if self.n_blocks == 0:
            raise InputError("the CTranslate2 file holds no Whisper encoder blocks")
        self.n_mels = w["conv1/weight"].shape[1]
        w["conv1/weight"] = w["conv1/weight"].reshape(len(w["conv1/bias"]), -1)
        w["conv2/weight"] = w["conv2/weight"].reshape(len(w["conv2/bias"]), -1)
        self.w = w
        self.width = len(w["conv1/bias"])
        self.max_states = len(w["position_encodings/encodings"])

    def __call__(self, mel: np.ndarray) -> list[np.ndarray]:
        w = self.w
        x = _gelu(_conv3(np.asarray(mel, np.float32), w["conv1/weight"], w["conv1/bias"], 1))
        x = _gelu(_conv3(x, w["conv2/weight"], w["conv2/bias"], 2)).T
        if len(x) > self.max_states:
            raise ValueError(f"{len(x)} states exceed the encoder's {self.max_states}")
        x = x + w["position_encodings/encodings"][:len(x)]
        heads, width = self.heads, self.width
        head_dim = width // heads
        scale = np.float32(1.0 / np.sqrt(head_dim))
        states = []
        for i in range(self.n_blocks):
            p = f"layer_{i}/"
            h = _layer_norm(x, w[p + "self_attention/layer_norm/gamma"], w[p + "self_attention/layer_norm/beta"])
            qkv = h @ w[p + "self_attention/linear_0/weight"].T + w[p + "self_attention/linear_0/bias"]
            q, k, v = (part.reshape(-1, heads, head_dim).transpose(1, 0, 2) for part in np.split(qkv, 3, axis=1))
            logits = (q * scale) @ k.transpose(0, 2, 1)
            logits = np.exp(logits - logits.max(-1, keepdims=True))
            logits /= logits.sum(-1, keepdims=True)
            attended = (logits @ v).transpose(1, 0, 2).reshape(-1, width)
            x = x + attended @ w[p + "self_attention/linear_1/weight"].T + w[p + "self_attention/linear_1/bias"]
            h = _layer_norm(x, w[p + "ffn/layer_norm/gamma"], w[p + "ffn/layer_norm/beta"])
            h = _gelu(h @ w[p + "ffn/linear_0/weight"].T + w[p + "ffn/linear_0/bias"])
            x = x + h @ w[p + "ffn/linear_1/weight"].T + w[p + "ffn/linear_1/bias"]
            states.append(x)
        states.append(_layer_norm(x, w["layer_norm/gamma"], w["layer_norm/beta"]))
        return states


@lru_cache(maxsize=2)
def load_encoder_net(model_dir: str) -> WhisperEncoderNet:
    """One network per model folder per process (reading and converting takes ~0.1 s)."""
    return WhisperEncoderNet(read_ctranslate2_variables(Path(model_dir) / "model.bin"))
