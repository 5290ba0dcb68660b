"""Post-processing of a clip's landmark track ``(T, 478, 3)``: gaps, jitter, and crop boxes.

Order of use: ``fill_gaps`` (NaN rows where no face) -> ``smooth_track`` -> ``mouth_boxes``.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

from lipdub.face.geometry import eye_centres
from lipdub.face.mesh import CHIN, NOSE_TIP


def _as_track(track: np.ndarray) -> np.ndarray:
    track = np.asarray(track, dtype=np.float32)
    if track.ndim != 3 or track.shape[2] not in (2, 3):
        raise ValueError(f"expected a landmark track (T, 478, 3), got {track.shape}")
    return track


def missing_frames(track: np.ndarray) -> np.ndarray:
    """Boolean ``(T,)``: frames with any non-finite landmark (no face found there)."""
    return ~np.isfinite(_as_track(track)).all(axis=(1, 2))


def fill_gaps(track: np.ndarray) -> np.ndarray:
    """Replace missing frames by linear interpolation between the nearest frames with a face.

    Frames before the first (after the last) face hold that first (last) face. Raises ValueError
    when no frame has a face. Returns a new float32 array.
    """
    track = _as_track(track).copy()
    missing = missing_frames(track)
    present = np.flatnonzero(~missing)
    if present.size == 0:
        raise ValueError("no frame of the track has landmarks")
    gaps = np.flatnonzero(missing)
    if gaps.size == 0:
        return track
    after = np.searchsorted(present, gaps)
    # Clipping the neighbour indices makes both neighbours the same frame at the ends: an edge hold.
    nxt = present[np.clip(after, 0, present.size - 1)]
    prv = present[np.clip(after - 1, 0, present.size - 1)]
    span = (nxt - prv).astype(np.float32)
    weight = np.divide(gaps - prv, span, out=np.zeros_like(span), where=span > 0)
    weight = weight[:, None, None]
    track[gaps] = (1.0 - weight) * track[prv] + weight * track[nxt]
    return track


def smooth_track(track: np.ndarray, window: int, polyorder: int = 2) -> np.ndarray:
    """Centred Savitzky-Golay smoothing over ``window`` frames (odd; 1 or less = off).

    A centred local polynomial fit removes tracker jitter without the lag of a causal filter and,
    unlike a moving average, keeps the height of fast mouth openings (peaks of a quadratic are
    reproduced exactly). Clips shorter than the window use the longest odd window that fits. The
    track must have no NaN (run ``fill_gaps`` first).
    """
    track = _as_track(track)
    if window <= 1:
        return track.copy()
    if window % 2 == 0:
        raise ValueError(f"smoothing window must be an odd number of frames, not {window}")
    if not np.isfinite(track).all():
        raise ValueError("the track has missing frames; fill_gaps() it before smoothing")
    fitted = min(window, len(track) if len(track) % 2 else len(track) - 1)
    if fitted <= polyorder:
        return track.copy()
    from scipy.signal import savgol_filter  # here: scipy.signal takes ~0.9 s to import

    return savgol_filter(track, fitted, polyorder, axis=0, mode="interp").astype(np.float32)


def mouth_boxes(track: np.ndarray, width: int, height: int, scale: float = 2.0,
                centre_sigma: float = 2.0) -> np.ndarray:
    """A square crop ``(x0, y0, x1, y1)`` per frame around the lower face, ``int32 (T, 4)``.

    ``x1``/``y1`` are exclusive: the crop is ``frame[y0:y1, x0:x1]``. The side is ``scale`` times
    the clip's median inter-ocular distance, the same in every frame, so the crop does not breathe
    with head turns or jaw motion; 2.0 spans cheek to cheek and nose tip to below the chin of an
    open mouth. The centre is the midpoint of nose tip and chin, placed by its clip-median offset
    from the eyes in the face's own axes (eye line and its normal): it follows head motion and
    roll, not the jaw, and is then smoothed over time with a centred
    Gaussian of ``centre_sigma`` frames (0 = off). Boxes are shifted (not shrunk) to lie inside
    the ``width`` x ``height`` frame; a side larger than the frame is cut to the frame.
    """
    track = _as_track(track)
    if not np.isfinite(track).all():
        raise ValueError("the track has missing frames; fill_gaps() it before mouth_boxes()")
    right_eye, left_eye = eye_centres(track)
    eyes_mid = (right_eye + left_eye) / 2
    axis_x = left_eye - right_eye                     # along the eye line, towards image right
    iod = np.linalg.norm(axis_x, axis=1)
    axis_x = axis_x / np.maximum(iod, 1e-6)[:, None]
    axis_y = np.stack([-axis_x[:, 1], axis_x[:, 0]], axis=1)  # normal, pointing down the face
    iod_median = float(np.median(iod))

    lower_face = (track[:, NOSE_TIP, :2] + track[:, CHIN, :2]) / 2
    rel = lower_face - eyes_mid
    offset = np.median(np.stack([(rel * axis_x).sum(1), (rel * axis_y).sum(1)], axis=1), axis=0)
    offset = offset / max(iod_median, 1e-6)
    centre = eyes_mid + iod_median * (offset[0] * axis_x + offset[1] * axis_y)
    if centre_sigma > 0 and len(centre) > 1:
        centre = gaussian_filter1d(centre, centre_sigma, axis=0, mode="nearest")

    side = int(min(round(scale * iod_median), width, height))
    side = max(side, 1)
    x0 = np.clip(np.round(centre[:, 0] - side / 2), 0, width - side).astype(np.int32)
    y0 = np.clip(np.round(centre[:, 1] - side / 2), 0, height - side).astype(np.int32)
    return np.stack([x0, y0, x0 + side, y0 + side], axis=1).astype(np.int32)
