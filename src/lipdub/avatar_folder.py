"""The avatar folder: its format, the options it is prepared with, and ``Avatar`` to read it.

Every kind of avatar (footage: ``lipdub.footage``; a photo: ``lipdub.photo.prepare``) writes the
same folder, with the helpers here: ``frames/000000.jpg...``, ``landmarks.npy`` (the dubbed
person's raw track, gaps held), ``landmarks_smooth.npy``, ``boxes.npy``, ``face_found.npy``,
optionally ``dub_weight.npy`` (how much of the dubbed mouth each frame may show: 0 where there is
no reliable face), ``shots.npy`` (shot number per frame), ``render_bank.npz`` (the real mouths the
renderer warps), ``audio.wav`` (16 kHz) and ``features.npz``, and ``manifest.json``. A folder is
built in a temporary sibling and renamed into place only when complete, so a crash or error never
leaves half an avatar, and an avatar already saved is never lost. Neither kind imports the other
or the dispatcher (``lipdub.avatar.prepare``); both import this module.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import threading
import zipfile
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from lipdub import __version__
from lipdub.errors import InputError, OutputError

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
FRAMES_DIR = "frames"
_ARRAY_FILES = {"raw_landmarks": "landmarks.npy", "landmarks": "landmarks_smooth.npy",
                "boxes": "boxes.npy", "face_found": "face_found.npy"}
# Written by footage preparation since shots and people are tracked; older folders lack them and
# read as "every frame dubbed, one shot".
_OPTIONAL_ARRAYS = {"dub_weight": "dub_weight.npy", "shots": "shots.npy"}
PEOPLE_FILE = "people.json"


@dataclass(frozen=True)
class PrepareOptions:
    """How ``prepare`` reads and tracks the input, and which face it keeps."""

    fps: float = 25.0  # frame rate of the avatar; the source is resampled to it
    smooth: int = 5  # centred Savitzky-Golay window over the landmarks, odd frames; 1 = off
    face_index: int | None = None  # N-th face from the left (0-based); None = the largest
    face_point: tuple[float, float] | None = None  # or the face at (x, y), fractions of the frame
    min_face_fraction: float = 0.0  # fail if fewer frames than this have a usable face
    jpeg_quality: int = 95
    max_size: int | None = None  # shrink so the longer side is at most this many pixels
    features: bool = True  # also store the source audio's features (features.npz)
    # Which frames are dubbed: a face at least this large (eye distance, pixels), turned by at
    # most this much (degrees); gaps in its track up to ``max_gap`` s are interpolated, longer
    # ones (and cuts) never; the dubbed mouth fades out/in over ``fade`` frames at their edges.
    min_eye_distance: float = 12.0
    max_yaw: float = 45.0
    max_gap: float = 0.2
    fade: int = 3
    bank: bool = True  # build the renderer's mouth bank now (generate needs no training)

    def __post_init__(self):
        if not self.fps > 0:
            raise ValueError(f"fps must be positive, got {self.fps}")
        if self.smooth < 1 or (self.smooth > 1 and self.smooth % 2 == 0):
            raise ValueError(f"smooth must be 1 (off) or an odd number of frames, got {self.smooth}")
        if self.face_index is not None and self.face_index < 0:
            raise ValueError(f"face_index must be >= 0, got {self.face_index}")
        if self.face_point is not None:
            point = tuple(float(v) for v in self.face_point)
            if len(point) != 2 or not all(0.0 <= v <= 1.0 for v in point):
                raise ValueError(f"face_point must be (x, y) fractions in 0..1, got {self.face_point!r}")
            if self.face_index is not None:
                raise ValueError("give face_index or face_point, not both")
            object.__setattr__(self, "face_point", point)
        if not 0.0 <= self.min_face_fraction <= 1.0:
            raise ValueError(f"min_face_fraction must be in 0..1, got {self.min_face_fraction}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in 1..100, got {self.jpeg_quality}")
        if self.max_size is not None and self.max_size < 16:
            raise ValueError(f"max_size must be at least 16 pixels, got {self.max_size}")
        if self.min_eye_distance < 0 or not 0 < self.max_yaw <= 90:
            raise ValueError("min_eye_distance must be >= 0 and max_yaw in (0, 90]")
        if self.max_gap < 0 or self.fade < 0:
            raise ValueError("max_gap and fade must be >= 0")


def base_manifest(source: Path, sha256: str, fps: float, n_frames: int, width: int, height: int,
                  settings: dict, **extra) -> dict:
    """The manifest fields every kind of avatar writes (``extra`` adds or overrides)."""
    return {"format_version": FORMAT_VERSION, "lipdub_version": __version__,
            "source": source.name, "source_sha256": sha256, "fps": float(fps),
            "n_frames": int(n_frames), "width": int(width), "height": int(height),
            "settings": settings,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), **extra}


def write_manifest(work: Path, manifest: dict) -> None:
    (work / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")


def store_track(work: Path, track: np.ndarray, found: np.ndarray, smooth: int,
                width: int, height: int) -> None:
    """One continuous shot of one face: ``track`` gap-filled, smoothed, boxed, saved."""
    from lipdub.face import fill_gaps, mouth_boxes, smooth_track

    raw = fill_gaps(track)
    smoothed = smooth_track(raw, smooth)
    store_arrays(work, raw, smoothed, mouth_boxes(smoothed, width, height), found)


def store_arrays(work: Path, raw: np.ndarray, smoothed: np.ndarray, boxes: np.ndarray,
                 found: np.ndarray, dub_weight: np.ndarray | None = None,
                 shots: np.ndarray | None = None) -> None:
    np.save(work / _ARRAY_FILES["raw_landmarks"], np.asarray(raw, np.float32))
    np.save(work / _ARRAY_FILES["landmarks"], np.asarray(smoothed, np.float32))
    np.save(work / _ARRAY_FILES["boxes"], np.asarray(boxes, np.int32))
    np.save(work / _ARRAY_FILES["face_found"], np.asarray(found, bool))
    if dub_weight is not None:
        np.save(work / _OPTIONAL_ARRAYS["dub_weight"], np.asarray(dub_weight, np.float32))
    if shots is not None:
        np.save(work / _OPTIONAL_ARRAYS["shots"], np.asarray(shots, np.int32))


def new_work_dir(out_dir: Path) -> Path:
    """A fresh temporary folder beside ``out_dir``, renamed into place by ``install_avatar_dir``."""
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"{out_dir.name}.tmp-", dir=out_dir.parent))
    except OSError as exc:
        raise OutputError(f"cannot write into {out_dir.parent}: {exc.strerror or exc}") from None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_avatar_dir(path: Path) -> bool:
    return (path / MANIFEST_NAME).is_file()


def check_destination(out_dir: Path, overwrite: bool) -> None:
    """Refuse before any work if finishing would have to destroy something we may not replace."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise OutputError(f"{out_dir} exists and is not a folder")
    if not any(out_dir.iterdir()):
        return
    if not _is_avatar_dir(out_dir):
        raise OutputError(f"{out_dir} is not empty and is not a lipdub avatar: choose another folder")
    if not overwrite:
        raise OutputError(f"{out_dir} already holds an avatar: pass overwrite=True (--overwrite) "
                          "to replace it")


def install_avatar_dir(work: Path, out_dir: Path, overwrite: bool) -> None:
    """Rename the finished ``work`` folder to ``out_dir``; an old avatar goes only once it's done."""
    check_destination(out_dir, overwrite)  # again: the folder may have changed meanwhile
    try:
        if out_dir.exists() and not any(out_dir.iterdir()):
            out_dir.rmdir()
        if not out_dir.exists():
            os.rename(work, out_dir)
            return
        old = Path(tempfile.mkdtemp(prefix=f"{out_dir.name}.old-", dir=out_dir.parent))
        os.rename(out_dir, old / "avatar")
        try:
            os.rename(work, out_dir)
        except OSError:
            os.rename(old / "avatar", out_dir)
            raise
        shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        raise OutputError(f"cannot move the new avatar into {out_dir}: {exc.strerror or exc}") from None


# -------------------------------------------------------------------------------------- Avatar

class Avatar:
    """A prepared avatar folder. Arrays load at once; frames are decoded on demand.

    Attributes: ``path``, ``manifest``, ``fps``, ``n_frames``, ``width``, ``height``,
    ``landmarks`` (smoothed, ``float32 (N, 478, 3)`` pixels), ``raw_landmarks`` (gap-filled,
    unsmoothed), ``boxes`` (``int32 (N, 4)`` x0, y0, x1, y1 exclusive, see
    ``lipdub.face.mouth_boxes``), ``face_found`` (``bool (N,)``: the dubbed person's face is
    there and usable), ``dub_weight`` (``float32 (N,)`` in 0..1: how much of a dubbed mouth the
    frame may show; 0 = pass it through untouched), ``shots`` (``int32 (N,)`` shot number),
    ``has_audio``, ``audio_path``.
    """

    FRAME_CACHE_SIZE = 16

    def __init__(self, path: Path, manifest: dict, arrays: dict[str, np.ndarray]):
        self.path = path
        self.manifest = manifest
        self.fps = float(manifest["fps"])
        self.n_frames = int(manifest["n_frames"])
        self.width = int(manifest["width"])
        self.height = int(manifest["height"])
        self.has_audio = bool(manifest.get("has_audio", False))
        self.landmarks = arrays["landmarks"]
        self.raw_landmarks = arrays["raw_landmarks"]
        self.boxes = arrays["boxes"]
        self.face_found = arrays["face_found"]
        self.dub_weight = arrays.get("dub_weight")
        if self.dub_weight is None:  # a folder from before shots were tracked: one shot, all dubbed
            self.dub_weight = np.ones(self.n_frames, np.float32)
        self.shots = arrays.get("shots")
        if self.shots is None:
            self.shots = np.zeros(self.n_frames, np.int32)
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Avatar":
        """Open an avatar folder; InputError if it is not one, is damaged, or of another format."""
        path = Path(path)
        if not _is_avatar_dir(path):
            raise InputError(f"{path} is not a lipdub avatar (no {MANIFEST_NAME}); "
                             "make one with `lipdub prepare`")
        try:
            manifest = json.loads((path / MANIFEST_NAME).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{path / MANIFEST_NAME} is unreadable: {exc}") from None
        version = manifest.get("format_version") if isinstance(manifest, dict) else None
        if isinstance(version, int) and version > FORMAT_VERSION:
            raise InputError(f"{path} was made by a newer lipdub (avatar format {version}; this one "
                             f"reads format {FORMAT_VERSION}): upgrade lipdub, or prepare it again")
        if version != FORMAT_VERSION:
            raise InputError(f"{path} is an avatar of format {version!r}; this lipdub reads format "
                             f"{FORMAT_VERSION}: prepare it again")
        keys = ("fps", "n_frames", "width", "height")
        if any(key not in manifest for key in keys):
            raise InputError(f"{path / MANIFEST_NAME} lacks one of {', '.join(keys)}")
        try:
            n = int(manifest["n_frames"])
            if n < 1 or not float(manifest["fps"]) > 0 or min(int(manifest["width"]), int(manifest["height"])) < 1:
                raise ValueError
        except (TypeError, ValueError):
            raise InputError(f"{path / MANIFEST_NAME} is damaged: fps, n_frames, width and height "
                             "must be positive numbers") from None
        # Archives, JSON and models cut short (a failed copy) are named now, not met as a
        # parser's traceback halfway through a job.
        for side in sorted(path.glob("*.npz")) + sorted(path.glob("*.json")) + sorted(path.glob("*.onnx")):
            if ".partial." in side.name:
                continue  # a write that was cut short (training or a bank rebuild killed): not in use
            try:
                if side.suffix == ".npz":
                    import zipfile

                    if not zipfile.is_zipfile(side):
                        raise ValueError("truncated or not an npz archive")
                elif side.suffix == ".json":
                    json.loads(side.read_text())
                else:
                    import onnx

                    onnx.load_model(str(side), load_external_data=False)
            except ImportError:
                pass  # no onnx package: onnxruntime's own error will have to do
            except Exception as exc:  # protobuf's DecodeError, JSONDecodeError, ...
                raise InputError(f"avatar {path} is damaged: {side.name} is unreadable "
                                 f"({str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__})") from None
        arrays = {}
        optional = {k: v for k, v in _OPTIONAL_ARRAYS.items() if (path / v).is_file()}
        for name, filename in {**_ARRAY_FILES, **optional}.items():
            try:
                arrays[name] = np.load(path / filename, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise InputError(f"avatar {path} is damaged: cannot read {filename} ({exc})") from None
            if len(arrays[name]) != n:
                raise InputError(f"avatar {path} is damaged: {filename} has {len(arrays[name])} "
                                 f"rows for {n} frames")
        return cls(path, manifest, arrays)

    @property
    def audio_path(self) -> Path | None:
        """The source's audio as 16 kHz mono WAV, or None if the source had none."""
        path = self.path / "audio.wav"
        return path if self.has_audio and path.is_file() else None

    @property
    def people(self) -> dict:
        """Shots and people found in the footage (``people.json``; empty for older folders)."""
        path = self.path / PEOPLE_FILE
        return json.loads(path.read_text()) if path.is_file() else {}

    def features(self):
        """The source audio's ``AudioFeatures`` (aligned with the frames), or None."""
        path = self.path / "features.npz"
        if not path.is_file():
            return None
        from lipdub.audio import FEATURES_VERSION, AudioFeatures, extract_features

        try:
            with np.load(path, allow_pickle=False) as data:
                version = int(data["version"]) if "version" in data.files else 0
        except (OSError, ValueError, zipfile.BadZipFile):
            version = None  # damaged: AudioFeatures.load says so
        audio = self.path / "audio.wav"
        if version is not None and version != FEATURES_VERSION and audio.is_file():
            # Made by an older audio front end: recompute from the stored audio, so the motion
            # model (trained on the current front end) never reads features of another kind.
            print(f"lipdub: {self.path.name}: its audio features come from an older lipdub; "
                  "computing them again", file=sys.stderr, flush=True)
            features = extract_features(audio, self.fps, len(self))
            try:
                features.save(path)
            except OutputError:
                pass  # a read-only avatar folder only loses the refreshed copy
            return features
        return AudioFeatures.load(path)

    def frame_path(self, index: int) -> Path:
        return self.path / FRAMES_DIR / f"{self._check_index(index):06d}.jpg"

    def frame(self, index: int) -> np.ndarray:
        """Frame ``index`` as RGB uint8 ``(H, W, 3)``, READ-ONLY (it is cached): copy to draw on it."""
        index = self._check_index(index)
        with self._cache_lock:
            cached = self._cache.get(index)
            if cached is not None:
                self._cache.move_to_end(index)
                return cached
        frame = self._decode(index)
        frame.flags.writeable = False
        with self._cache_lock:
            self._cache[index] = frame
            while len(self._cache) > self.FRAME_CACHE_SIZE:
                self._cache.popitem(last=False)
        return frame

    def iter_frames(self, indices: Iterable[int] | None = None, read_ahead: int = 4) -> Iterator[np.ndarray]:
        """Writable RGB frames in order of ``indices`` (default: all), decoded ``read_ahead`` ahead
        in threads (JPEG decoding releases the GIL) and not through the cache."""
        order = range(self.n_frames) if indices is None else (self._check_index(i) for i in indices)
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="avatar-read") as pool:
            queue: deque = deque()
            for index in order:
                queue.append(pool.submit(self._decode, index))
                if len(queue) > read_ahead:
                    yield queue.popleft().result()
            while queue:
                yield queue.popleft().result()

    def _check_index(self, index: int) -> int:
        index = int(index)
        if not 0 <= index < self.n_frames:
            raise IndexError(f"frame {index} is outside this avatar's 0..{self.n_frames - 1}")
        return index

    def _decode(self, index: int) -> np.ndarray:
        path = self.path / FRAMES_DIR / f"{index:06d}.jpg"
        try:
            data = path.read_bytes()
        except OSError:
            data = b""
        image = _decode_jpeg(data)
        if image is None:
            raise InputError(f"avatar frame {path} is missing or damaged")
        return image

    def __len__(self) -> int:
        return self.n_frames

    def __repr__(self) -> str:
        return (f"Avatar({str(self.path)!r}, {self.n_frames} frames, {self.width}x{self.height} "
                f"@ {self.fps:g} fps)")


def _decode_jpeg(data: bytes) -> np.ndarray | None:
    """RGB uint8 of a JPEG file's bytes, None if damaged. simplejpeg (libjpeg-turbo straight to
    RGB, the same pixels as OpenCV's decoder) is ~1.5x faster than cv2.imdecode + cvtColor on a
    1080x1920 frame; OpenCV stays the fallback for anything it refuses."""
    if not data:
        return None
    try:
        import simplejpeg

        return simplejpeg.decode_jpeg(data, colorspace="RGB")
    except (ImportError, ValueError):
        import cv2

        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        return None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
