"""The renderer network: a small plain-conv U-Net that corrects a warped real mouth.

Why this shape (see ../shared/docs/probes.md): on a 2-core CPU, double convs with BatchNorm train at
~4 samples/s and depthwise blocks are slower still, so every stage is a single plain 3x3 conv with a
LeakyReLU. The network does not paint the mouth from nothing: its input carries a real mouth from
another frame, already warped onto the target lip shape, and the output is that warped mouth plus a
bounded residual. Real texture stays sharp; the network fixes shading, seams and what the warp
cannot move (teeth appearing, the inside of the mouth).

Input channels (all in 0..1, crop-sized): warped reference RGB (3), masked target RGB (3),
condition channels drawn by ``condition.draw_condition`` (outer lips, mouth opening, jaw) (3) and
the mask (1). Output: RGB in 0..1.
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

IN_CHANNELS = 10
DEFAULT_WIDTHS = (16, 32, 64, 96, 128)


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.LeakyReLU(0.1, inplace=True))


class MouthRenderer(nn.Module):
    """U-Net: (B, 10, S, S) -> (B, 3, S, S); S must be a multiple of 2**(len(widths)-1)."""

    def __init__(self, widths: tuple[int, ...] = DEFAULT_WIDTHS, in_channels: int = IN_CHANNELS):
        super().__init__()
        self.widths = tuple(int(w) for w in widths)
        w = self.widths
        self.stem = _conv(in_channels, w[0])
        # Each level down: a strided conv (halves the size) and one more conv at that size.
        self.down = nn.ModuleList(
            nn.Sequential(_conv(w[i], w[i + 1], 2), _conv(w[i + 1], w[i + 1])) for i in range(len(w) - 1))
        # Each level up: nearest upsample, concat the skip, one conv.
        self.up = nn.ModuleList(_conv(w[i + 1] + w[i], w[i]) for i in reversed(range(len(w) - 1)))
        self.head = nn.Conv2d(w[0], 3, 3, 1, 1)
        # Start as "return the warped reference": the residual begins at zero.
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ref = x[:, :3]
        skips = [self.stem(x)]
        for block in self.down:
            skips.append(block(skips[-1]))
        y = skips.pop()
        for block in self.up:
            skip = skips.pop()
            y = F.interpolate(y, scale_factor=2.0, mode="nearest")
            y = block(torch.cat([y, skip], 1))
        residual = torch.tanh(self.head(y))
        return torch.clamp(ref + residual, 0.0, 1.0)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
