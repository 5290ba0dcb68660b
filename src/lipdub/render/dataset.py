"""Training samples for the per-avatar renderer, built from the avatar's own frames.

Self-supervised: every training frame is a target, with its own tracked landmarks as the shape
condition. Its reference is one of the ``K`` bank mouths nearest in shape, excluding the frame's
own neighbourhood (otherwise the network learns to copy an almost identical neighbour), warped onto
the target's lips and chin. All of it is precomputed once as uint8 (a few hundred MB for a minute of
footage at 128 px), so a training step costs only the network.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lipdub.progress import Progress, ProgressFn
from lipdub.render.condition import draw_condition, masks, to_crop
from lipdub.render.reference import ReferenceBank, build_bank  # noqa: F401 (build_bank: moved)
from lipdub.render.warp import warp

N_REFS = 3           # candidate references per target (nearest shapes)
EXCLUDE_RADIUS = 5   # frames around the target that may not serve as its reference


@dataclass
class TrainSet:
    targets: np.ndarray   # (N, S, S, 3) uint8
    refs: np.ndarray      # (N, K, S, S, 3) uint8, warped onto each target's shape
    cond: np.ndarray      # (N, 3, S, S) uint8 drawn shape condition
    hidden: np.ndarray    # (N, 2, S, S) uint8: own mouth mask, and its union with reference 0's
    alpha: np.ndarray     # (N, 2, S, S) uint8 feathered paste weights (x255) matching ``hidden``

    def __len__(self) -> int:
        return len(self.targets)


def build_trainset(avatar, bank: ReferenceBank, k: int = N_REFS,
                   progress: ProgressFn | None = None) -> TrainSet:
    """Targets = every bank frame; references = its k nearest-shape bank mouths, warped."""
    size, n = bank.size, len(bank.crops)
    k = max(1, min(k, n - 1))
    radius = EXCLUDE_RADIUS if n > 4 * (2 * EXCLUDE_RADIUS + 1) else 0
    near = bank.nearest(bank.points, k=k, exclude_frames=bank.frames, exclude_radius=radius)
    if radius == 0:
        # Tiny clips: still never use the frame itself.
        d = bank.distances(bank.points)
        np.fill_diagonal(d, np.inf)
        near = np.argsort(d, axis=1)[:, :k]
    ts = TrainSet(bank.crops, np.empty((n, k, size, size, 3), np.uint8),
                  np.empty((n, 3, size, size), np.uint8), np.empty((n, 2, size, size), np.uint8),
                  np.empty((n, 2, size, size), np.uint8))
    with Progress(n, "warp references", callback=progress) as bar:
        for i in range(n):
            lm = to_crop(avatar.landmarks[bank.frames[i]], avatar.boxes[bank.frames[i]], size)
            for j, r in enumerate(near[i]):
                ts.refs[i, j] = warp(bank.crops[r], bank.points[r], bank.points[i])
            ts.cond[i] = np.round(draw_condition(lm, size) * 255)
            ref_lm = _shape_as_landmarks(bank.points[near[i, 0]])
            for v, sets in enumerate(([lm], [lm, ref_lm])):
                hidden, alpha = masks(sets, size)
                ts.hidden[i, v] = hidden
                ts.alpha[i, v] = np.round(alpha * 255)
            bar.update(1)
    return ts


def _shape_as_landmarks(points: np.ndarray) -> np.ndarray:
    """Scatter shape points back into a (478, 2) array (only the shape indices are meaningful)."""
    from lipdub.render.condition import WARP_IDX

    lm = np.zeros((478, 2), np.float32)
    lm[WARP_IDX] = points
    return lm


def make_batch(ts: TrainSet, idx: np.ndarray, rng: np.random.Generator, augment: bool = True):
    """(x (B,10,S,S), target (B,3,S,S), alpha (B,1,S,S), hidden (B,1,S,S)) float tensors."""
    b = len(idx)
    k = ts.refs.shape[1]
    # The nearest reference most often, as at generation time; the others for variety.
    pick = rng.choice(k, size=b, p=_ref_probs(k)) if augment else np.zeros(b, int)
    variant = rng.integers(0, 2, size=b) if augment else np.zeros(b, int)
    ref = torch.from_numpy(ts.refs[idx, pick]).permute(0, 3, 1, 2).float() / 255
    tgt = torch.from_numpy(ts.targets[idx]).permute(0, 3, 1, 2).float() / 255
    cond = torch.from_numpy(ts.cond[idx]).float() / 255
    hidden = torch.from_numpy(ts.hidden[idx, variant]).float()[:, None]
    alpha = torch.from_numpy(ts.alpha[idx, variant]).float()[:, None] / 255
    if augment:
        # Same colour change on reference and target (at generation both come from one video).
        gain = torch.from_numpy(rng.uniform(0.85, 1.15, (b, 3, 1, 1))).float()
        bias = torch.from_numpy(rng.uniform(-0.06, 0.06, (b, 1, 1, 1))).float()
        ref = (ref * gain + bias).clamp(0, 1)
        tgt = (tgt * gain + bias).clamp(0, 1)
    x = torch.cat([ref, tgt * (1 - hidden), cond, hidden], 1)
    if augment:
        shifts = rng.integers(-3, 4, size=(b, 2))
        rolled = [torch.roll(t, (int(s[0]), int(s[1])), (1, 2))
                  for t, s in zip(torch.cat([x, tgt, alpha], 1), shifts)]
        both = torch.stack(rolled)
        x, tgt, alpha = both[:, :10], both[:, 10:13], both[:, 13:14]
        hidden = x[:, 9:10]
    return x.contiguous(), tgt.contiguous(), alpha.contiguous(), hidden.contiguous()


def _ref_probs(k: int) -> np.ndarray:
    p = np.array([0.6] + [0.4 / max(1, k - 1)] * (k - 1))[:k]
    return p / p.sum()
