"""Quality metrics: per-frame image metrics, mouth-motion metrics, and whole-video comparison.

``compare_videos`` and ``format_report`` back the ``lipdub compare`` command; the per-frame and
per-track functions are used by tests and benchmarks directly.
"""

from lipdub.metrics.compare import compare_videos
from lipdub.metrics.image import DiffStats, abs_diff_stats, luma, psnr, sharpness, ssim, ssim_map
from lipdub.metrics.mouth import (aperture_series, best_lag, lagged_pearson, lip_shape, lmd,
                                  lmd_from_shapes, pearson)
from lipdub.metrics.report import format_report

__all__ = [
    "DiffStats", "abs_diff_stats", "aperture_series", "best_lag", "compare_videos", "format_report",
    "lagged_pearson", "lip_shape", "lmd", "lmd_from_shapes", "luma", "pearson", "psnr", "sharpness",
    "ssim", "ssim_map",
]
