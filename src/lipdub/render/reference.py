"""Real mouths of the avatar, retrievable by shape: the texture source of the renderer.

probes.md measured that pasting the training frame with the nearest lip shape is sharp (sharpness
0.87 of real) but slightly off in shape, while a network painting from scratch is accurate but
blurred. The bank keeps every training frame's mouth crop with its lip/chin points; for a target
shape the nearest real mouth is fetched and warped onto it (``warp.py``), and the network only
corrects what is left.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

import cv2

from lipdub.errors import NoFaceError
from lipdub.progress import Progress, ProgressFn
from lipdub.render.condition import (LIPS_INNER_IDX, LIPS_OUTER_IDX, SHAPE_IDX, crop, int_box,
                                     shape_points, to_crop)

BANK_FILE = "render_bank.npz"
#: Crop side of a bank made at preparation (the renderer's default size, ``TrainOptions.size``).
BANK_SIZE = 128
MAX_FULL = 320       # largest full-resolution bank crop kept (memory: 300 KB per frame)
#: A bank made at preparation holds at most this many frames (40 s at 25 fps), evenly spread over
#: the usable ones: plenty of mouth shapes, and at most ~300 MB of crops for a close-up.
MAX_BANK_FRAMES = 1000
# Retrieval cares most about the opening (teeth, dark cavity), then the outer lips, then the chin.
_N_OUT, _N_IN = len(LIPS_OUTER_IDX), len(LIPS_INNER_IDX)
_WEIGHTS = np.concatenate([np.full(_N_OUT, 1.0), np.full(_N_IN, 1.5),
                           np.full(len(SHAPE_IDX) - _N_OUT - _N_IN, 0.5)]).astype(np.float32)
# Weight of the inner lips' opening in retrieval. With each frame's own jaw pose in the target
# (``lipdub.motion.pose``) the chin line tells the head's turn, and without this a closed target
# on a turned frame fetched a parted mouth of the same pose, drawn with a dark slit between its
# lips. Chosen on four other avatars than sync_eval's (0 / 300 / 1000: cross-speaker closure
# recall 0.56 / 0.63 / 0.62, r 0.43 / 0.44 / 0.43).
OPENING_WEIGHT = 300.0
# Keep the previous frame's reference unless another is this much closer (relative): switching
# references every frame makes teeth and lip texture flicker.
HYSTERESIS = 0.3


def inner_opening(points: np.ndarray, size: int) -> np.ndarray:
    """(N,) how far the inner lips stand apart, in crop sides: the spread of the inner-lip points
    across their own main axis (so a tilted head's closed mouth still reads 0)."""
    pts = np.asarray(points, np.float32).reshape(len(points), -1, 2)[:, _N_OUT:_N_OUT + _N_IN]
    rel = (pts - pts.mean(axis=1, keepdims=True)) / float(size)
    return np.linalg.svd(rel, compute_uv=False)[:, 1] / np.sqrt(_N_IN)


def shape_features(points: np.ndarray, size: int) -> np.ndarray:
    """(N, K, 2) crop-space warp points -> mouth-shape features (lips, chin), centred on the outer lips and
    scaled by the crop side, so a small drift of the crop box does not change the match; plus the
    inner lips' opening (``inner_opening``), weighted so that it, not the head's pose in the chin
    line, decides between a closed and a parted reference for a closed target."""
    pts = np.asarray(points, np.float32).reshape(len(points), -1, 2)[:, :len(SHAPE_IDX)]
    centre = pts[:, :_N_OUT].mean(axis=1, keepdims=True)
    rel = (pts - centre) / float(size)
    shape = (rel * np.sqrt(_WEIGHTS)[None, :, None]).reshape(len(pts), -1)
    opening = inner_opening(points, size)[:, None] * np.sqrt(OPENING_WEIGHT)
    return np.concatenate([shape, opening.astype(np.float32)], axis=1)


@dataclass
class ReferenceBank:
    crops: np.ndarray    # (M, S, S, 3) uint8 mouth crops at the renderer's size
    points: np.ndarray   # (M, K, 2) float32 shape points in crop coordinates (size S)
    frames: np.ndarray   # (M,) int32 avatar frame index of each crop
    # (M, B, B, 3) the same crops at the footage's own box resolution when it is larger than S:
    # generation warps these so the pasted mouth keeps the footage's sharpness.
    full: np.ndarray | None = None

    @property
    def size(self) -> int:
        return int(self.crops.shape[1])

    @property
    def full_size(self) -> int:
        return int(self.full.shape[1]) if self.full is not None else self.size

    def full_crop(self, i: int) -> np.ndarray:
        return self.full[i] if self.full is not None else self.crops[i]

    def __post_init__(self) -> None:
        self.features = shape_features(self.points, self.size)

    def save(self, directory: Path) -> Path:
        path = Path(directory) / BANK_FILE
        tmp = path.with_suffix(".partial.npz")
        extra = {"full": self.full} if self.full is not None else {}
        np.savez(tmp, crops=self.crops, points=self.points, frames=self.frames, **extra)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, directory: Path) -> "ReferenceBank":
        """The saved bank; its crops memory-mapped read-only (``mapped_npz``) where the file
        allows it, else read whole."""
        path = Path(directory) / BANK_FILE
        data = mapped_npz(path)
        if data is None:
            with np.load(path) as npz:
                data = {name: npz[name] for name in npz.files}
        # points and frames are small: copies (a rebuild keeps ``frames``; no map outlives it)
        return cls(data["crops"], np.array(data["points"], np.float32),
                   np.array(data["frames"], np.int32), data.get("full"))

    def distances(self, points: np.ndarray) -> np.ndarray:
        """(N, M) squared feature distances from N query shapes to every bank mouth."""
        q = shape_features(points, self.size)
        d = (q * q).sum(1)[:, None] + (self.features * self.features).sum(1)[None, :] \
            - 2.0 * q @ self.features.T
        return np.maximum(d, 0.0)

    def nearest(self, points: np.ndarray, k: int = 1, exclude_frames: np.ndarray | None = None,
                exclude_radius: int = 0) -> np.ndarray:
        """(N, k) bank indices of the closest mouths; optionally skipping bank frames within
        ``exclude_radius`` of each query's own frame (self-supervised training)."""
        d = self.distances(points)
        if exclude_frames is not None:
            near = np.abs(self.frames[None, :] - np.asarray(exclude_frames)[:, None]) <= exclude_radius
            d[near] = np.inf
        k = min(k, d.shape[1])
        idx = np.argpartition(d, k - 1, axis=1)[:, :k]
        order = np.take_along_axis(d, idx, 1).argsort(1)
        return np.take_along_axis(idx, order, 1)

    def sequence(self, points: np.ndarray, previous: int | None = None) -> np.ndarray:
        """Nearest mouth per frame of a consecutive run, made temporally coherent: the previous
        frame's reference, or the bank frame that followed it in the footage (real motion, as in
        video textures), is kept unless another is more than ``HYSTERESIS`` closer."""
        d = self.distances(points)
        out = np.empty(len(d), np.int64)
        m = len(self.frames)
        for t, row in enumerate(d):
            best = int(row.argmin())
            if previous is not None:
                limit = row[best] * (1.0 + HYSTERESIS) ** 2
                follow = previous + 1
                if follow < m and self.frames[follow] == self.frames[previous] + 1 and row[follow] <= limit:
                    best = follow
                elif row[previous] <= limit:
                    best = previous
            out[t] = previous = best
        return out


def mapped_npz(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays of an uncompressed ``.npz`` (what ``np.savez`` writes) as read-only memory maps,
    or None if any member is compressed or not a plain ``.npy``.

    A close-up's bank is ~90 MB of crops, and reading it whole was the last thing the first
    frame waited for (0.2-0.3 s, and its RSS); generation touches only the references it picks.
    A stored zip member is the ``.npy`` file verbatim, at an offset the local header gives."""
    import struct
    import zipfile

    from numpy.lib import format as npy

    out = {}
    try:
        with zipfile.ZipFile(path) as archive, open(path, "rb") as f:
            for info in archive.infolist():
                if info.compress_type != zipfile.ZIP_STORED or not info.filename.endswith(".npy"):
                    return None
                f.seek(info.header_offset)
                local = f.read(30)
                if len(local) < 30 or local[:4] != b"PK\x03\x04":
                    return None
                name_len, extra_len = struct.unpack("<HH", local[26:30])
                f.seek(info.header_offset + 30 + name_len + extra_len)
                version = npy.read_magic(f)
                read_header = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
                shape, fortran, dtype = read_header(f)
                if dtype.hasobject:
                    return None
                size = int(np.prod(shape)) * dtype.itemsize
                if f.tell() + size > info.header_offset + 30 + name_len + extra_len + info.file_size:
                    return None
                array = (np.zeros(shape, dtype) if size == 0 else
                         np.memmap(path, dtype, "r", f.tell(), shape, "F" if fortran else "C"))
                out[info.filename[:-4]] = np.asarray(array)  # a plain ndarray view of the map
    except (OSError, ValueError, zipfile.BadZipFile, struct.error):
        return None
    return out


def iter_avatar_frames(avatar, indices):
    """(index, frame) of ``avatar`` at ``indices``, decoded ahead by the avatar's reader."""
    indices = [int(i) for i in indices]
    return zip(indices, avatar.iter_frames(indices))


def build_bank(avatar, indices, size: int, progress: ProgressFn | None = None) -> ReferenceBank:
    """Crops and shape points of ``avatar`` at ``indices`` (the frames the renderer learns from)."""
    indices = np.asarray(sorted(int(i) for i in indices), np.int32)
    crops = np.empty((len(indices), size, size, 3), np.uint8)
    # Keep the footage's own resolution too when its mouth box is larger than the crop.
    # (Shots may differ in face size: the median box side.)
    sides = [int_box(avatar.boxes[i])[2] - int_box(avatar.boxes[i])[0] for i in indices]
    full_side = min(MAX_FULL, int(np.median(sides)))
    full = np.empty((len(indices), full_side, full_side, 3), np.uint8) if full_side > size else None
    points = np.empty((len(indices), len(shape_points(np.zeros((478, 2)))), 2), np.float32)
    pos = {int(f): n for n, f in enumerate(indices)}
    with Progress(len(indices), "crop frames", callback=progress) as bar:
        for i, frame in iter_avatar_frames(avatar, indices):
            n = pos[i]
            if full is not None:
                full[n] = crop(frame, avatar.boxes[i], full_side)
                crops[n] = cv2.resize(full[n], (size, size), interpolation=cv2.INTER_AREA)
            else:
                crops[n] = crop(frame, avatar.boxes[i], size)
            points[n] = shape_points(to_crop(avatar.landmarks[i], avatar.boxes[i], size))
            bar.update(1)
    return ReferenceBank(crops, points, indices, full)


def bank_frames(avatar, limit: int) -> np.ndarray:
    """Frames a mouth bank should hold: the dubbed person's fully usable frames (dub weight 1;
    never another person's, never a faceless or turned frame), at most ``limit``, evenly spread."""
    weight = np.asarray(getattr(avatar, "dub_weight", np.ones(avatar.n_frames)))
    usable = np.flatnonzero(weight >= 1.0)
    if usable.size == 0:
        usable = np.flatnonzero(weight > 0)
    if usable.size == 0:
        raise NoFaceError("the avatar has no frame with a usable face")
    if usable.size > limit:
        usable = usable[np.unique(np.linspace(0, usable.size - 1, limit).round().astype(int))]
    return usable


def prepare_bank(avatar, limit: int = MAX_BANK_FRAMES, progress: ProgressFn | None = None,
                 size: int = BANK_SIZE) -> ReferenceBank:
    """Build and save the mouth bank of a prepared avatar: all the network-free renderer needs."""
    bank = build_bank(avatar, bank_frames(avatar, limit), size, progress)
    bank.save(avatar.path)
    return bank
