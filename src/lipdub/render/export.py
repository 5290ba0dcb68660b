"""ONNX export of the renderer, checked against PyTorch on real inputs.

Generation runs the network through onnxruntime (no torch needed at run time), so the exported
graph must match the trained one: ``validate`` renders real crops both ways and requires PSNR >= 40
dB between them.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np

ONNX_FILE = "renderer.onnx"
META_FILE = "renderer.json"
MIN_PARITY_PSNR = 40.0


def export_onnx(model, path: Path, size: int) -> Path:
    """Write ``model`` (a ``MouthRenderer``) as ONNX with a dynamic batch axis; atomic."""
    import torch

    path = Path(path)
    tmp = path.with_name(path.stem + ".partial.onnx")
    model = model.eval().cpu()
    # The TorchScript exporter is deprecated but needs no onnxscript and handles this plain graph.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, torch.zeros(1, model.stem[0].in_channels, size, size), str(tmp),
                          input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
                          opset_version=17, dynamo=False)
    tmp.replace(path)
    return path


def parity_psnr(model, onnx_path: Path, x: np.ndarray) -> float:
    """PSNR (dB, 8-bit scale) between PyTorch and onnxruntime outputs for inputs ``x``."""
    import onnxruntime as ort
    import torch

    with torch.no_grad():
        ref = model.eval().cpu()(torch.from_numpy(x)).numpy()
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"x": x})[0]
    mse = float(np.mean((np.round(ref * 255) - np.round(got * 255)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def write_meta(directory: Path, meta: dict) -> Path:
    path = Path(directory) / META_FILE
    tmp = path.with_suffix(".partial.json")
    tmp.write_text(json.dumps(meta, indent=2))
    tmp.replace(path)
    return path


def read_meta(directory: Path) -> dict:
    path = Path(directory) / META_FILE
    if not path.exists():
        return {}
    return json.loads(path.read_text())
