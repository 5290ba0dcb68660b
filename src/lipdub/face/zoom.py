"""Crops for faces too small for MediaPipe's detector to see in the whole frame.

Face mesh detects on the frame letterboxed to 128x128 (the short-range BlazeFace model): a face
narrower than about a quarter of the frame's longer side is missed, e.g. a presenter in a 1080p
landscape shot (measured: the astronaut's 100-pixel face is found in a 768-pixel frame, not in a
1024-pixel one). Looking at square crops of the frame makes the same face relatively larger.
"""

from __future__ import annotations

import numpy as np

#: Crops smaller than this hold faces too small for the 192-pixel landmark model to be useful.
MIN_CROP_SIDE = 192
#: A crop this many times the face's extent leaves the face well above the detector's limit
#: (about 0.26 of the crop) while giving room to move between frames.
ROI_FACE_RATIO = 3.0


def _starts(length: int, side: int) -> list[int]:
    """Crop starts along one axis, half a crop apart, the last flush with the far edge."""
    if side >= length:
        return [0]
    starts = list(range(0, length - side, side // 2))
    return starts + [length - side]


def search_levels(height: int, width: int, max_levels: int = 3) -> list[list[tuple[int, int, int]]]:
    """Square crops ``(x0, y0, side)`` to search, coarse level first, each overlapping by half.

    Level k has side ``min(height, width) / 2**k``; with half-crop steps any face up to half a
    crop wide lies wholly inside some crop. Level 0 is left out for a square-ish frame, where it
    would be the whole frame again.
    """
    short, long_ = min(height, width), max(height, width)
    levels = []
    for k in range(max_levels):
        side = short >> k
        if side < MIN_CROP_SIDE:
            break
        if k == 0 and long_ <= 1.2 * short:
            continue
        levels.append([(x, y, side) for y in _starts(height, side) for x in _starts(width, side)])
    return levels


def roi_around(landmarks: np.ndarray, height: int, width: int) -> tuple[int, int, int]:
    """A square crop ``(x0, y0, side)`` centred on a face, ROI_FACE_RATIO times its extent, inside
    the frame (shifted, or cut to the frame's shorter side)."""
    lo = landmarks[:, :2].min(axis=0)
    hi = landmarks[:, :2].max(axis=0)
    side = int(min(max(ROI_FACE_RATIO * float((hi - lo).max()), MIN_CROP_SIDE), height, width))
    cx, cy = (lo + hi) / 2
    x0 = int(np.clip(round(cx - side / 2), 0, width - side))
    y0 = int(np.clip(round(cy - side / 2), 0, height - side))
    return x0, y0, side


def follow_roi(landmarks: np.ndarray, roi: tuple[int, int, int], height: int, width: int,
               max_step: float = 0.04) -> tuple[int, int, int]:
    """The crop for the next frame: slid towards the face by at most ``max_step`` of its side.

    The tracker inside the crop predicts where the face is from the previous frame in crop
    coordinates; a crop that jumps breaks that prediction and loses the face for a frame (seen on
    a face moving 2 px a frame: a miss at each jump), while small slides look like ordinary head
    motion. The size changes (a jump) only when the face grew or shrank by a third or more.
    """
    x0, y0, side = roi
    target_x, target_y, target_side = roi_around(landmarks, height, width)
    if not 0.67 < target_side / side < 1.5:
        return target_x, target_y, target_side
    step = max(1, int(max_step * side))
    x = int(np.clip(x0 + np.clip(target_x - x0, -step, step), 0, width - side))
    y = int(np.clip(y0 + np.clip(target_y - y0, -step, step), 0, height - side))
    return x, y, side


def distinct_faces(faces: list[np.ndarray]) -> list[np.ndarray]:
    """Drop repeats of one face seen in several overlapping crops (keeps the larger sighting)."""
    def extent(f):
        return float((f[:, :2].max(axis=0) - f[:, :2].min(axis=0)).max())

    kept: list[np.ndarray] = []
    for face in sorted(faces, key=extent, reverse=True):
        centre = face[:, :2].mean(axis=0)
        if all(np.linalg.norm(centre - k[:, :2].mean(axis=0)) > 0.5 * extent(k) for k in kept):
            kept.append(face)
    return kept
