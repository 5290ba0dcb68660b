"""Per-frame image metrics on RGB ``uint8`` frames: PSNR, SSIM, absolute-difference stats, sharpness.

All functions take frames of equal shape ``(H, W, 3)``; an optional boolean ``mask`` of shape
``(H, W)`` restricts a metric to the pixels where it is True (e.g. the mouth box), so a renderer
that only touches the mouth can be judged on the mouth alone.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import cv2
import numpy as np

PEAK = 255.0

# SSIM constants from Wang et al. 2004: an 11x11 Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03.
_SSIM_SIGMA = 1.5
_SSIM_KSIZE = (11, 11)
_SSIM_C1 = (0.01 * PEAK) ** 2
_SSIM_C2 = (0.03 * PEAK) ** 2


class DiffStats(NamedTuple):
    """How far two frames are apart pixel by pixel."""

    max_abs: int  # largest absolute difference over all pixels and channels, 0..255
    mean_abs: float  # mean absolute difference over all pixels and channels
    identical_share: float  # share of pixels whose three channels are all equal, 0..1


def _check_pair(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None):
    """Validate a frame pair and mask; return them C-contiguous (as OpenCV needs), the mask as
    uint8 0/1, or None for "all pixels"."""
    if a.shape != b.shape:
        raise ValueError(f"frames differ in shape: {a.shape} vs {b.shape}")
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected RGB frames (H, W, 3), got {a.shape}")
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    if mask is None:
        return a, b, None
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != a.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} does not match frame size {a.shape[:2]}")
    if not mask.any():
        raise ValueError("mask selects no pixels")
    return a, b, mask.astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Peak signal-to-noise ratio in dB over all channels (``inf`` when the pixels are identical).

    With ``mask``, the mean squared error is taken over the masked pixels only.
    """
    a, b, mask = _check_pair(a, b, mask)
    # cv2.norm sums integer squares in double precision: exact below 2**53, i.e. for any frame size
    # in use, so a constant offset gives exactly 20*log10(255/offset); ~100x faster than numpy.
    if mask is None:
        sq_sum, count = cv2.norm(a, b, cv2.NORM_L2SQR), a.size
    else:
        sq_sum = cv2.norm(a, b, cv2.NORM_L2SQR, mask=mask)
        count = cv2.countNonZero(mask) * a.shape[2]
    if sq_sum == 0:
        return math.inf
    mse = sq_sum / count
    return 10.0 * math.log10(PEAK * PEAK / mse)


def luma(img: np.ndarray) -> np.ndarray:
    """BT.601 luma (0.299 R + 0.587 G + 0.114 B) of an RGB frame as float32 in 0..255."""
    # OpenCV's RGB2GRAY uses exactly these weights and, on float input, does not round.
    return cv2.cvtColor(np.ascontiguousarray(img, dtype=np.float32), cv2.COLOR_RGB2GRAY)


def ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel SSIM of the lumas of two RGB frames (float32, same H x W)."""
    x, y = luma(a), luma(b)

    def blur(img: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(img, _SSIM_KSIZE, _SSIM_SIGMA, borderType=cv2.BORDER_REFLECT)

    mu_x, mu_y = blur(x), blur(y)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    # float32 is enough: the rounding error of E[x^2] - mu^2 (~1e-2) is tiny next to C2 (~58.5).
    var_x = blur(x * x) - mu_xx
    var_y = blur(y * y) - mu_yy
    cov = blur(x * y) - mu_xy
    num = (2 * mu_xy + _SSIM_C1) * (2 * cov + _SSIM_C2)
    den = (mu_xx + mu_yy + _SSIM_C1) * (var_x + var_y + _SSIM_C2)
    return num / den


def ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Structural similarity of two RGB frames, on BT.601 luma with an 11x11 Gaussian window.

    Luma rather than per channel: structure lives mostly in brightness (as in ffmpeg's SSIM Y
    figure), and one channel is a third of the work. Returns exactly 1.0 for identical frames;
    with ``mask``, the SSIM map is averaged over the masked pixels only (the windows themselves
    still see the unmasked neighbours).
    """
    a, b, mask = _check_pair(a, b, mask)
    if cv2.norm(a, b, cv2.NORM_INF, mask=mask) == 0:
        return 1.0  # exact, rather than 1 minus float32 rounding
    values = ssim_map(a, b)
    if mask is not None:
        values = values[mask.view(bool)]
    return float(values.mean(dtype=np.float64))


def abs_diff_stats(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> DiffStats:
    """Max and mean absolute difference, and the share of pixels equal in all three channels."""
    a, b, mask = _check_pair(a, b, mask)
    diff = cv2.absdiff(a, b)  # uint8, no overflow, and faster than widening to int16
    if mask is not None:
        diff = diff[mask.view(bool)][None]  # (1, N, 3): still an image for the OpenCV calls below
    # A pixel is identical when the OR of its three channel differences is 0; this is ~15x faster
    # than numpy's any(axis=-1) over the interleaved channels.
    channels_or = cv2.bitwise_or(cv2.bitwise_or(diff[..., 0], diff[..., 1]), diff[..., 2])
    n_pixels = channels_or.size
    return DiffStats(
        max_abs=int(diff.max()),
        mean_abs=float(sum(cv2.sumElems(diff))) / diff.size,
        identical_share=(n_pixels - cv2.countNonZero(channels_or)) / n_pixels,
    )


def sharpness(img: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Variance of the grayscale Laplacian: higher is sharper; compare as a ratio between frames."""
    if img.ndim == 3:
        gray = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)
    else:
        gray = img
    lap = cv2.Laplacian(gray, cv2.CV_64F)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != lap.shape:
            raise ValueError(f"mask shape {mask.shape} does not match image size {lap.shape}")
        lap = lap[mask]
    return float(lap.var())
