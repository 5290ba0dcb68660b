"""Compare two videos frame by frame: pixels (PSNR, SSIM, differences) and mouth motion.

Both videos are decoded in lock-step at one frame rate, so memory stays at a couple of frames plus
a few numbers per frame, whatever the length. The result is a plain dict that ``json.dumps``
accepts with ``allow_nan=False``: values that are not finite numbers are written as strings
``"inf"`` / ``"-inf"`` (PSNR of identical frames) or ``None`` (undefined: no face, constant
signal, nothing compared), because NaN/Infinity are not valid JSON and break strict parsers.

Result layout::

    a, b: str (paths)             fps: float             seconds: float (wall time)
    frames: {a, b, compared}      size: {a: [w, h], b: [w, h]}    b_resized: bool
    psnr: {mean, min, identical_frames}   mean is over non-identical frames; "inf" if all identical
    ssim: {mean, min}             pixels: {max_abs_diff, mean_abs_diff, identical_share}
    mouth: None (mouth=False) or {faces_found: {a, b}, r, lag, lag_seconds, lag_r, max_lag, lmd}
    per_frame: {psnr, ssim, max_abs_diff, mean_abs_diff, identical_share[, aperture_a, aperture_b]}
    outputs: {side_by_side, plot} (paths or None)         notes: [str]
"""

from __future__ import annotations

import math
import time
from contextlib import ExitStack
from pathlib import Path

import cv2
import numpy as np

from lipdub.errors import InputError
from lipdub.metrics.image import abs_diff_stats, psnr, ssim
from lipdub.metrics.mouth import (aperture_series, best_lag, lip_indices, lip_shape, lmd_from_shapes,
                                  pearson)
from lipdub.progress import Progress, ProgressFn


def json_safe(value):
    """``value`` with numpy scalars made Python, inf as "inf"/"-inf" and NaN as None (recursively)."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return [json_safe(v) for v in value.tolist()]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    return value


def _resize_to(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    h, w = frame.shape[:2]
    # INTER_AREA averages when shrinking (no aliasing); it degrades to bilinear-like when growing.
    interp = cv2.INTER_AREA if w * h > width * height else cv2.INTER_LINEAR
    return cv2.resize(frame, (width, height), interpolation=interp)


class _MouthTracks:
    """Two face trackers, and per frame only the aperture and normalised lip shape of each video."""

    def __init__(self, stack: ExitStack):
        from lipdub.face import FaceTracker

        self.trackers = (stack.enter_context(FaceTracker(mode="video")),
                         stack.enter_context(FaceTracker(mode="video")))
        self.apertures: tuple[list[float], list[float]] = ([], [])
        self.shapes: tuple[list[np.ndarray | None], list[np.ndarray | None]] = ([], [])
        self.found = [0, 0]

    def add(self, frame_a: np.ndarray, frame_b: np.ndarray) -> None:
        for side, frame in enumerate((frame_a, frame_b)):
            landmarks = self.trackers[side].track(frame)
            if landmarks is None:
                self.apertures[side].append(math.nan)
                self.shapes[side].append(None)
                continue
            track = np.asarray(landmarks, dtype=np.float32)[None]
            self.found[side] += 1
            self.apertures[side].append(float(aperture_series(track)[0]))
            self.shapes[side].append(lip_shape(track)[0])

    def _shape_array(self, side: int) -> np.ndarray:
        """The lip shapes of one video as ``(T, K, 2)``, NaN in frames without a face."""
        missing = np.full((len(lip_indices()), 2), np.nan)
        return np.stack([missing if s is None else s for s in self.shapes[side]])

    def summary(self, fps: float, max_lag: int) -> dict:
        ap_a, ap_b = np.array(self.apertures[0]), np.array(self.apertures[1])
        lag, lag_r = best_lag(ap_a, ap_b, max_lag=max_lag)
        return {
            "faces_found": {"a": self.found[0], "b": self.found[1]},
            "r": pearson(ap_a, ap_b),
            "lag": lag,
            "lag_seconds": None if lag is None else lag / fps,
            "lag_r": lag_r,
            "max_lag": max_lag,
            "lmd": lmd_from_shapes(self._shape_array(0), self._shape_array(1)),
        }


def _pixel_summary(psnrs: list[float], ssims: list[float], max_diffs: list[int],
                   mean_diffs: list[float], identical: list[float]) -> dict:
    identical_frames = sum(1 for p in psnrs if math.isinf(p))
    finite = [p for p in psnrs if math.isfinite(p)]
    if psnrs and identical_frames == len(psnrs):
        psnr_mean = math.inf
    else:
        # inf would swallow any mean; the finite mean plus the count of identical frames keeps both facts.
        psnr_mean = float(np.mean(finite)) if finite else math.nan
    return {
        "psnr": {"mean": psnr_mean, "min": min(psnrs, default=math.nan),
                 "identical_frames": identical_frames},
        "ssim": {"mean": float(np.mean(ssims)) if ssims else math.nan,
                 "min": min(ssims, default=math.nan)},
        "pixels": {"max_abs_diff": max(max_diffs, default=None),
                   "mean_abs_diff": float(np.mean(mean_diffs)) if mean_diffs else math.nan,
                   "identical_share": float(np.mean(identical)) if identical else math.nan},
    }


def compare_videos(a, b, fps: float = 25.0, mouth: bool = True, side_by_side=None, plot=None,
                   progress: ProgressFn | None = None, max_lag: int = 10) -> dict:
    """Compare video ``b`` against reference ``a``, frame by frame at ``fps``; see module docstring.

    Frames are paired by index after sampling both at ``fps``; the first ``min(len a, len b)``
    are compared. If B's frames differ in size from A's, B is resized to A's size first (noted in
    ``notes`` and ``b_resized``). With ``mouth``, each video gets its own face tracker and the
    mouth-aperture series are correlated (``best_lag`` sign: positive = B late). ``side_by_side``
    writes an MP4 of A | B (B at A's size) with A's audio; ``plot`` writes a PNG of both aperture
    curves. Returns a JSON-safe dict, laid out as in the module docstring.
    """
    if plot is not None and not mouth:
        raise InputError("the aperture plot needs mouth tracking; drop --no-mouth or --plot")
    from lipdub import video

    started = time.perf_counter()
    a, b = Path(a), Path(b)
    info_a, info_b = video.probe(a), video.probe(b)
    # Only for the progress bar: the counts reported are the frames actually decoded.
    expected = round(min(info_a.duration, info_b.duration) * fps) or None

    notes: list[str] = []
    psnrs: list[float] = []
    ssims: list[float] = []
    max_diffs: list[int] = []
    mean_diffs: list[float] = []
    identical: list[float] = []
    size_a = size_b = None
    frames_a = video.read_frames(a, fps=fps)
    frames_b = video.read_frames(b, fps=fps)
    with ExitStack() as stack:
        stack.callback(getattr(frames_a, "close", lambda: None))
        stack.callback(getattr(frames_b, "close", lambda: None))
        tracks = _MouthTracks(stack) if mouth else None
        bar = stack.enter_context(Progress(expected, "compare", callback=progress))
        writer = None
        while True:
            # Pull one frame from each by hand: zip() would silently drop a frame of the longer one.
            frame_a = next(frames_a, None)
            frame_b = next(frames_b, None)
            if frame_a is None or frame_b is None:
                break
            if size_a is None:
                size_a = (frame_a.shape[1], frame_a.shape[0])
                size_b = (frame_b.shape[1], frame_b.shape[0])
            b_at_a = frame_b if frame_b.shape == frame_a.shape else _resize_to(frame_b, *size_a)
            psnrs.append(psnr(frame_a, b_at_a))
            ssims.append(ssim(frame_a, b_at_a))
            stats = abs_diff_stats(frame_a, b_at_a)
            max_diffs.append(stats.max_abs)
            mean_diffs.append(stats.mean_abs)
            identical.append(stats.identical_share)
            if tracks is not None:
                # B is tracked at its own size: the mouth metrics are scale-free anyway.
                tracks.add(frame_a, frame_b)
            if side_by_side is not None:
                if writer is None:
                    # A's soundtrack (a path, as the writer takes it) so the pair can be watched.
                    writer = stack.enter_context(video.VideoWriter(
                        side_by_side, 2 * size_a[0], size_a[1], video.EncodeOptions(fps=fps),
                        audio=a if info_a.has_audio else None))
                writer.write(np.hstack([frame_a, b_at_a]))
            bar.update(1)
        compared = len(psnrs)
        # The frames past the shorter video are only counted, so both lengths are reported exactly.
        count_a = compared + (frame_a is not None) + sum(1 for _ in frames_a)
        count_b = compared + (frame_b is not None) + sum(1 for _ in frames_b)

    if compared == 0:
        raise InputError(f"nothing to compare: {a.name} has {count_a} frames, {b.name} has {count_b}")
    b_resized = size_a != size_b
    if b_resized:
        notes.append(f"B resized from {size_b[0]}x{size_b[1]} to A's {size_a[0]}x{size_a[1]} "
                     "before comparing")
    if count_a != count_b:
        notes.append(f"frame counts differ (A {count_a}, B {count_b}): compared the first {compared}")

    result = {
        "a": str(a), "b": str(b), "fps": fps,
        "frames": {"a": count_a, "b": count_b, "compared": compared},
        "size": {"a": list(size_a), "b": list(size_b)},
        "b_resized": b_resized,
        **_pixel_summary(psnrs, ssims, max_diffs, mean_diffs, identical),
        "mouth": None,
        "per_frame": {"psnr": psnrs, "ssim": ssims, "max_abs_diff": max_diffs,
                      "mean_abs_diff": mean_diffs, "identical_share": identical},
        "outputs": {"side_by_side": None if side_by_side is None else str(side_by_side),
                    "plot": None if plot is None else str(plot)},
        "notes": notes,
    }
    if tracks is not None:
        result["mouth"] = tracks.summary(fps, max_lag)
        result["per_frame"]["aperture_a"] = tracks.apertures[0]
        result["per_frame"]["aperture_b"] = tracks.apertures[1]
        for side in ("a", "b"):
            if result["mouth"]["faces_found"][side] == 0:
                notes.append(f"no face found in {side.upper()}: mouth metrics undefined")
        lag = result["mouth"]["lag"]
        if lag is not None and lag != 0 and abs(lag) == min(max_lag, compared // 2):
            # A maximum on the boundary is no maximum: the offset may be larger, or the mouths unrelated.
            notes.append(f"best lag {lag:+d} is at the edge of the search range: "
                         "the true offset may be larger, or the mouths unrelated")
        if plot is not None:
            from lipdub.metrics.report import plot_apertures

            plot_apertures(tracks.apertures[0], tracks.apertures[1], fps, plot,
                           json_safe(result["mouth"]), labels=(a.name, b.name))
    result["seconds"] = time.perf_counter() - started
    return json_safe(result)
