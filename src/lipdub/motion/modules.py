"""The audio → mouth network: a small non-causal dilated 1-D conv over per-frame audio features.

Pure ``torch.nn`` (no I/O), so training, ONNX export and tests share one definition.

Design notes
- Convolutions are *valid* (no padding): an input of ``T`` frames gives ``T - 2 * receptive_field``
  outputs. The caller pads (edge-replicates) the features, which keeps chunked/streaming inference
  exactly equal to whole-file inference once each chunk carries ``receptive_field`` frames of context
  on either side.
- Feature normalisation and the PCA decoder live inside the module as buffers, so the exported ONNX
  graph takes raw prepared features and returns canonical landmark offsets directly.
- Several members can be averaged in one graph (:class:`Ensemble`): each is tiny, and averaging
  independently seeded members cuts the variance that dominates with ~50 training speakers.
"""

from __future__ import annotations

import torch
from torch import nn


class Block(nn.Module):
    """Residual dilated conv; the residual is cropped because the conv is unpadded."""

    def __init__(self, width: int, dilation: int, kernel: int = 3, dropout: float = 0.1):
        super().__init__()
        self.crop = dilation * (kernel - 1) // 2
        self.conv = nn.Conv1d(width, width, kernel, dilation=dilation)
        self.mix = nn.Conv1d(width, width, 1)
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.mix(self.drop(self.act(self.conv(x))))
        return x[:, :, self.crop:x.shape[2] - self.crop] + y


class MotionNet(nn.Module):
    """(B, T, F) prepared features → (B, T - 2R, P) canonical mouth offsets, via a PCA code."""

    def __init__(self, in_dim: int, basis: torch.Tensor, width: int = 128,
                 dilations: tuple[int, ...] = (1, 2, 4, 2, 1), kernel: int = 3,
                 dropout: float = 0.1, in_dropout: float = 0.2):
        super().__init__()
        n_code, n_out = basis.shape
        self.register_buffer("mu", torch.zeros(in_dim))
        self.register_buffer("sd", torch.ones(in_dim))
        # Rows: orthonormal PCA directions scaled by their std, so the code is roughly unit variance.
        self.register_buffer("basis", basis.clone().float())
        self.register_buffer("mean", torch.zeros(n_out))
        self.inp = nn.Conv1d(in_dim, width, 1)
        self.in_drop = nn.Dropout(in_dropout)
        self.blocks = nn.Sequential(*[Block(width, d, kernel, dropout) for d in dilations])
        self.out = nn.Conv1d(width, n_code, 1)
        self.receptive_field = sum(d * (kernel - 1) // 2 for d in dilations)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, F) → (B, width, T - 2R): the states the output layer reads."""
        x = (x - self.mu) / self.sd
        h = self.inp(self.in_drop(x.transpose(1, 2)))
        return self.blocks(torch.nn.functional.gelu(h))

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        """States from :meth:`hidden` → (B, T - 2R, P) canonical mouth offsets."""
        return self.out(h).transpose(1, 2) @ self.basis + self.mean

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.hidden(x))


class Ensemble(nn.Module):
    """Average of members' landmark offsets; members must share the receptive field."""

    def __init__(self, members: list[MotionNet]):
        super().__init__()
        self.members = nn.ModuleList(members)
        fields = {m.receptive_field for m in members}
        if len(fields) != 1:
            raise ValueError(f"ensemble members disagree on receptive field: {fields}")
        self.receptive_field = fields.pop()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.members]).mean(0)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
