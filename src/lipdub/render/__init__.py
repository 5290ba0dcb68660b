"""Per-avatar mouth renderer: a real mouth of the avatar, warped to the wanted shape, corrected by a
small U-Net trained on the avatar's own frames, run through onnxruntime at generation time.

- ``condition``: crop geometry, drawn lip/chin condition, the tight paste mask.
- ``reference`` / ``warp``: the bank of real mouths, retrieval by shape, thin-plate-spline warp.
- ``modules``: the network (PyTorch); ``dataset`` / ``train``: self-supervised training;
  ``export``: ONNX export and parity check; ``runtime``: batched onnxruntime inference.

Only ``train`` / ``export`` / ``modules`` need PyTorch; generation needs onnxruntime alone.
"""

from lipdub.render.runtime import RenderedChunk, Renderer

__all__ = ["Renderer", "RenderedChunk", "TrainOptions", "train_renderer", "export_renderer"]


def __getattr__(name):
    # Training entry points import lazily, so generation never imports PyTorch.
    if name in ("TrainOptions", "train_renderer", "export_renderer"):
        from lipdub.render import train

        return getattr(train, name)
    raise AttributeError(name)
