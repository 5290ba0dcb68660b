"""Per-avatar training of the mouth renderer, then ONNX export and a parity check.

``train_renderer(avatar, TrainOptions(...))`` writes into the avatar folder:
``renderer.pt`` (checkpoint, rewritten every few minutes, resumable), ``render_bank.npz`` (the real
mouths the renderer warps), ``renderer.onnx`` and ``renderer.json`` (size, widths, training record).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from lipdub.errors import InputError, MissingDependencyError
from lipdub.progress import Progress, ProgressFn
from lipdub.render.export import (MIN_PARITY_PSNR, ONNX_FILE, export_onnx, parity_psnr,
                                  write_meta)

CKPT_FILE = "renderer.pt"


@dataclass(frozen=True)
class TrainOptions:
    minutes: float | None = None     # wall-clock budget of the training loop
    epochs: float | None = None      # or a number of passes over the frames (deterministic)
    size: int = 128                  # crop side in pixels (multiple of 16, up to 320)
    seed: int = 0
    device: str = "cpu"
    resume: bool = False
    batch_size: int = 16
    lr: float = 5e-4
    widths: tuple[int, ...] = (16, 32, 64, 96, 128)
    frames: tuple[int, int] | None = None  # [start, stop) frames to learn from; None = all
    checkpoint_minutes: float = 3.0
    steps: int | None = None         # exact number of steps (tests); overrides minutes/epochs
    max_frames: int = 3000           # longer footage is subsampled evenly (memory of the bank)
    default_minutes: float = field(default=15.0, repr=False)


def _require_torch():
    try:
        import torch  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise MissingDependencyError(
            "training needs PyTorch: pip install 'lipdub[train]'") from exc


def _loss(out, tgt, alpha, hidden):
    """Masked L1 + (1 - SSIM) + gradient L1 on the composited crop (no pretrained networks)."""
    import torch
    import torch.nn.functional as F

    comp = alpha * out + (1 - alpha) * tgt
    area = hidden.sum().clamp_min(1.0)
    l1 = (hidden * (comp - tgt).abs()).sum() / (3 * area)
    # SSIM on luma with an 11x11 Gaussian window (sigma 1.5), weighted to the hidden region.
    w = torch.tensor([0.299, 0.587, 0.114], device=out.device).view(1, 3, 1, 1)
    x, y = (comp * w).sum(1, keepdim=True), (tgt * w).sum(1, keepdim=True)
    g = torch.exp(-((torch.arange(11, device=out.device) - 5.0) ** 2) / (2 * 1.5 ** 2))
    g = (g / g.sum()).view(1, 1, 1, 11)

    def blur(t):
        return F.conv2d(F.conv2d(t, g, padding=(0, 5)), g.transpose(2, 3), padding=(5, 0))

    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    ssim = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    l_ssim = (hidden * (1 - ssim)).sum() / area
    gx = (comp[..., :, 1:] - comp[..., :, :-1]) - (tgt[..., :, 1:] - tgt[..., :, :-1])
    gy = (comp[..., 1:, :] - comp[..., :-1, :]) - (tgt[..., 1:, :] - tgt[..., :-1, :])
    l_grad = ((hidden[..., :, 1:] * gx.abs()).sum() + (hidden[..., 1:, :] * gy.abs()).sum()) / (3 * area)
    return l1 + 0.3 * l_ssim + 0.5 * l_grad, {"l1": float(l1.detach()), "ssim": float(1 - l_ssim.detach())}


def _avatar_dir(avatar) -> Path:
    return Path(getattr(avatar, "path", getattr(avatar, "dir", None)))


def train_renderer(avatar, options: TrainOptions = TrainOptions(),
                   progress: ProgressFn | None = None) -> Path:
    """Train the renderer of ``avatar`` (an ``Avatar``); returns the path of ``renderer.onnx``."""
    _require_torch()
    import torch

    from lipdub.render.dataset import build_trainset, make_batch
    from lipdub.render.reference import bank_frames, build_bank
    from lipdub.render.modules import MouthRenderer

    if options.size % 16 or not 32 <= options.size <= 320:
        raise InputError(f"renderer size must be a multiple of 16 in 32..320, got {options.size}")
    out_dir = _avatar_dir(avatar)
    start, stop = options.frames or (0, avatar.n_frames)
    start, stop = max(0, int(start)), min(avatar.n_frames, int(stop))
    # Only the dubbed person's usable frames teach it (no faceless frame, no other person).
    usable = bank_frames(avatar, avatar.n_frames)
    usable = usable[(usable >= start) & (usable < stop)]
    if len(usable) < 2:
        raise InputError("the renderer needs at least 2 frames of footage with a usable face to learn from")

    torch.manual_seed(options.seed)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    picked = usable[np.unique(np.linspace(0, len(usable) - 1, min(len(usable), options.max_frames))
                              .round().astype(int))]
    bank = build_bank(avatar, picked, options.size, progress)
    bank.save(out_dir)
    ts = build_trainset(avatar, bank, progress=progress)
    n = len(ts)

    model = MouthRenderer(options.widths).to(options.device)
    opt = torch.optim.Adam(model.parameters(), lr=options.lr)
    step, elapsed = 0, 0.0
    ckpt_path = out_dir / CKPT_FILE
    if options.resume and ckpt_path.exists():
        state = torch.load(ckpt_path, map_location=options.device, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, elapsed = int(state["step"]), float(state["elapsed"])

    steps_per_epoch = max(1, math.ceil(n / options.batch_size))
    if options.steps is not None:
        total_steps, budget = int(options.steps), None
    elif options.epochs is not None:
        total_steps, budget = int(math.ceil(options.epochs * steps_per_epoch)), None
    else:
        total_steps, budget = None, 60.0 * (options.minutes or options.default_minutes)

    def fraction() -> float:
        return step / total_steps if total_steps else min(1.0, elapsed / budget)

    def save() -> None:
        tmp = ckpt_path.with_suffix(".partial.pt")
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                    "elapsed": elapsed, "options": asdict(options), "frames": [start, stop]}, tmp)
        tmp.replace(ckpt_path)

    last_save = time.monotonic()
    ema = None
    model.train()
    bar_total = total_steps if total_steps else int(budget)
    with Progress(bar_total, "train renderer", unit="step" if total_steps else "s",
                  callback=progress) as bar:
        bar.update(step if total_steps else int(elapsed))
        while fraction() < 1.0:
            t0 = time.monotonic()
            # The order depends only on (seed, epoch): a resumed or repeated run sees the same data.
            epoch, pos = divmod(step, steps_per_epoch)
            order = np.random.default_rng((options.seed, epoch)).permutation(n)
            idx = order[pos * options.batch_size:(pos + 1) * options.batch_size]
            rng = np.random.default_rng((options.seed, 1, step))
            x, tgt, alpha, hidden = (t.to(options.device) for t in make_batch(ts, idx, rng))
            # Short warm-up, then cosine decay: at 2e-3 without warm-up the residual drifted and the
            # loss rose above the warped reference's.
            warm = min(1.0, (step + 1) / 50)
            lr = warm * options.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * fraction())))
            for group in opt.param_groups:
                group["lr"] = lr
            loss, parts = _loss(model(x), tgt, alpha, hidden)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            dt = time.monotonic() - t0
            elapsed += dt
            value = float(loss.detach())
            ema = value if ema is None else 0.95 * ema + 0.05 * value
            if total_steps:
                bar.update(1, loss=f"{ema:.4f}")
            else:
                whole = int(elapsed) - bar.done
                bar.update(max(0, min(whole, bar_total - bar.done)), loss=f"{ema:.4f}", step=step)
            if time.monotonic() - last_save > 60 * options.checkpoint_minutes:
                save()
                last_save = time.monotonic()
    save()

    onnx_path = export_onnx(model, out_dir / ONNX_FILE, options.size)
    probe = np.random.default_rng(options.seed).choice(n, size=min(8, n), replace=False)
    x_real = make_batch(ts, np.sort(probe), np.random.default_rng(0), augment=False)[0].numpy()
    parity = parity_psnr(model, onnx_path, x_real)
    if parity < MIN_PARITY_PSNR:
        raise RuntimeError(f"ONNX export differs from PyTorch: {parity:.1f} dB < {MIN_PARITY_PSNR}")
    write_meta(out_dir, {"size": options.size, "widths": list(options.widths), "steps": step,
                         "train_seconds": round(elapsed, 1), "frames": [start, stop],
                         "samples": step * options.batch_size, "final_loss": ema,
                         "onnx_parity_psnr": None if math.isinf(parity) else round(parity, 2),
                         "seed": options.seed})
    return onnx_path


def export_renderer(avatar_dir: Path) -> Path:
    """Re-export ``renderer.onnx`` from the checkpoint in ``avatar_dir`` (``lipdub export``)."""
    _require_torch()
    import torch

    from lipdub.render.modules import MouthRenderer

    ckpt_path = Path(avatar_dir) / CKPT_FILE
    if not ckpt_path.exists():
        raise InputError(f"{avatar_dir} has no trained renderer ({CKPT_FILE}); run `lipdub train` first")
    state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    opts = state["options"]
    model = MouthRenderer(tuple(opts["widths"]))
    model.load_state_dict(state["model"])
    path = export_onnx(model, Path(avatar_dir) / ONNX_FILE, int(opts["size"]))
    x = np.random.default_rng(0).random((2, model.stem[0].in_channels, opts["size"], opts["size"]),
                                        dtype=np.float32)
    parity = parity_psnr(model, path, x)
    if parity < MIN_PARITY_PSNR:
        raise RuntimeError(f"ONNX export differs from PyTorch: {parity:.1f} dB < {MIN_PARITY_PSNR}")
    return path
