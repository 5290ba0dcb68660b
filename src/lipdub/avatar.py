"""Avatars: a video or photo prepared once (frames, face track, crop boxes, source audio) for dubbing.

An avatar folder holds ``frames/000000.jpg...``, ``landmarks.npy`` (gap-filled raw track),
``landmarks_smooth.npy``, ``boxes.npy``, ``face_found.npy``, optionally ``audio.wav`` (16 kHz) and
``features.npz``, and ``manifest.json``. ``prepare`` builds it in a temporary sibling folder and
renames it into place only when complete, so a crash or error never leaves half an avatar, and an
avatar already saved is never lost.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
import wave
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from lipdub import __version__
from lipdub.errors import InputError, NoFaceError, OutputError
from lipdub.progress import Progress, ProgressFn

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
FRAMES_DIR = "frames"
_ARRAY_FILES = {"raw_landmarks": "landmarks.npy", "landmarks": "landmarks_smooth.npy",
                "boxes": "boxes.npy", "face_found": "face_found.npy"}
# Frames JPEG-encoded but not yet written: enough to keep both encoder threads busy, few enough
# that a 4K clip doesn't pile up in memory when encoding is the slower side.
_MAX_PENDING_FRAMES = 8


@dataclass(frozen=True)
class PrepareOptions:
    """How ``prepare`` reads and tracks the input."""

    fps: float = 25.0  # frame rate of the avatar; the source is resampled to it
    smooth: int = 5  # centred Savitzky-Golay window over the landmarks, odd frames; 1 = off
    face_index: int | None = None  # N-th face from the left (0-based); None = the largest
    min_face_fraction: float = 0.5  # fail if fewer frames than this have a face
    jpeg_quality: int = 95
    max_size: int | None = None  # shrink so the longer side is at most this many pixels
    features: bool = True  # also store the source audio's features (features.npz)

    def __post_init__(self):
        if not self.fps > 0:
            raise ValueError(f"fps must be positive, got {self.fps}")
        if self.smooth < 1 or (self.smooth > 1 and self.smooth % 2 == 0):
            raise ValueError(f"smooth must be 1 (off) or an odd number of frames, got {self.smooth}")
        if self.face_index is not None and self.face_index < 0:
            raise ValueError(f"face_index must be >= 0, got {self.face_index}")
        if not 0.0 <= self.min_face_fraction <= 1.0:
            raise ValueError(f"min_face_fraction must be in 0..1, got {self.min_face_fraction}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in 1..100, got {self.jpeg_quality}")
        if self.max_size is not None and self.max_size < 16:
            raise ValueError(f"max_size must be at least 16 pixels, got {self.max_size}")


# ------------------------------------------------------------------------------------- prepare

def prepare(input_path: str | os.PathLike, out_dir: str | os.PathLike,
            options: PrepareOptions = PrepareOptions(), progress: ProgressFn | None = None,
            overwrite: bool = False, photo=None) -> "Avatar":
    """Track the face in every frame of a video (or a photo) and store the avatar in ``out_dir``.

    A photo becomes an idle-motion template (``photo``: ``lipdub.photo.PhotoOptions``; by default
    10 s with blinks, slight head motion and breathing), so it can be dubbed like footage;
    ``PhotoOptions(seconds=0)`` stores it as one still frame instead.

    Raises InputError (unreadable input), NoFaceError (no face, or in fewer than
    ``min_face_fraction`` of the frames) and OutputError (``out_dir`` holds an avatar and
    ``overwrite`` is False, or holds something else, or can't be written).
    """
    from lipdub.video import frame_count, probe

    started = time.perf_counter()
    source, out_dir = Path(input_path), Path(out_dir)
    check_destination(out_dir, overwrite)
    info = probe(source)
    if not info.has_video:
        raise InputError(f"{source} has no picture: an avatar needs a video or a photo")
    if info.is_image:
        from lipdub.photo.prepare import PhotoOptions, prepare_photo

        photo = photo if photo is not None else PhotoOptions()
        if photo.seconds > 0:
            return prepare_photo(source, out_dir, photo, options, progress, overwrite)
    expected = frame_count(source, options.fps)
    with_audio = info.has_audio and not info.is_image
    work = new_work_dir(out_dir)
    try:
        # Hashing and audio run beside the tracking loop; both spend their time outside the GIL.
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="prepare-bg") as background:
            digest = background.submit(file_sha256, source)
            audio_job = (background.submit(_store_audio, source, work, options, expected)
                         if with_audio else None)
            track, width, height = _track_and_store_frames(source, work, options, info.is_image,
                                                           expected, progress)
            n_frames = len(track)
            found = np.isfinite(track).all(axis=(1, 2))
            _require_faces(found, source, options.min_face_fraction)
            audio_seconds = 0.0
            if audio_job is not None:
                audio_seconds = audio_job.result()
                if options.features and n_frames != expected:
                    # The decoder delivered fewer frames than the header promised: match them.
                    _store_features(work, options.fps, n_frames)
            sha256 = digest.result()
        store_track(work, track, found, options.smooth, width, height)
        seconds = time.perf_counter() - started
        manifest = {
            "format_version": FORMAT_VERSION, "lipdub_version": __version__,
            "source": source.name, "source_sha256": sha256, "source_is_image": info.is_image,
            "fps": float(options.fps), "n_frames": n_frames, "width": width, "height": height,
            "settings": asdict(options), "has_audio": with_audio,
            "has_features": bool(with_audio and options.features), "audio_seconds": audio_seconds,
            "frames_with_face": int(found.sum()), "prepare_seconds": round(seconds, 3),
            "prepare_fps": round(n_frames / seconds, 2),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        (work / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
        install_avatar_dir(work, out_dir, overwrite)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return Avatar.load(out_dir)


def _track_and_store_frames(source: Path, work: Path, options: PrepareOptions, is_image: bool,
                            expected: int, progress: ProgressFn | None):
    """Track every frame and JPEG it to ``work/frames``; returns (track with NaN rows, w, h)."""
    import cv2

    from lipdub.face import N_LANDMARKS, FaceTracker
    from lipdub.video import read_frames

    frames_dir = work / FRAMES_DIR
    frames_dir.mkdir()
    missing = np.full((N_LANDMARKS, 3), np.nan, dtype=np.float32)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(options.jpeg_quality)]

    def write_jpeg(index: int, frame: np.ndarray) -> None:
        # cv2 releases the GIL while converting and encoding, so this overlaps with tracking.
        path = frames_dir / f"{index:06d}.jpg"
        if not cv2.imwrite(str(path), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), params):
            raise OutputError(f"cannot write {path}")

    track: list[np.ndarray] = []
    size = (0, 0)
    mode = "image" if is_image else "video"
    with FaceTracker(mode=mode, face_index=options.face_index) as tracker, \
            ThreadPoolExecutor(max_workers=2, thread_name_prefix="prepare-jpeg") as encoders, \
            Progress(total=expected, stage="prepare", callback=progress) as bar:
        pending: deque = deque()
        for index, frame in enumerate(read_frames(source, options.fps, options.max_size)):
            size = (frame.shape[1], frame.shape[0])
            pending.append(encoders.submit(write_jpeg, index, frame))
            landmarks = tracker.track(frame)
            track.append(missing if landmarks is None else landmarks)
            # Collect finished writes (raising their errors) and bound the backlog.
            while pending and (pending[0].done() or len(pending) > _MAX_PENDING_FRAMES):
                pending.popleft().result()
            bar.update(1)
        for job in pending:
            job.result()
    if not track:
        raise InputError(f"no frame could be decoded from {source}")
    return np.stack(track), size[0], size[1]


def _require_faces(found: np.ndarray, source: Path, min_fraction: float) -> None:
    n_found, n_frames = int(found.sum()), len(found)
    if n_found == 0:
        raise NoFaceError(f"no face found in {source}")
    if n_found < min_fraction * n_frames:
        raise NoFaceError(f"a face was found in only {n_found} of {n_frames} frames of {source}")


def store_track(work: Path, track: np.ndarray, found: np.ndarray, smooth: int,
                 width: int, height: int) -> None:
    from lipdub.face import fill_gaps, mouth_boxes, smooth_track

    raw = fill_gaps(track)
    smoothed = smooth_track(raw, smooth)
    np.save(work / _ARRAY_FILES["raw_landmarks"], raw)
    np.save(work / _ARRAY_FILES["landmarks"], smoothed)
    np.save(work / _ARRAY_FILES["boxes"], mouth_boxes(smoothed, width, height))
    np.save(work / _ARRAY_FILES["face_found"], found)


def _store_audio(source: Path, work: Path, options: PrepareOptions, n_frames: int) -> float:
    """Write the source's audio as 16 kHz ``audio.wav`` (+ features); returns its seconds."""
    from lipdub.audio import SAMPLE_RATE, load_audio

    audio = load_audio(source)
    pcm = np.round(np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2")
    with wave.open(str(work / "audio.wav"), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(pcm.tobytes())
    if options.features:
        _store_features(work, options.fps, n_frames, audio)
    return len(audio) / SAMPLE_RATE


def _store_features(work: Path, fps: float, n_frames: int, audio: np.ndarray | None = None) -> None:
    from lipdub.audio import extract_features

    source = audio if audio is not None else work / "audio.wav"
    extract_features(source, fps, n_frames).save(work / "features.npz")


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
    ``lipdub.face.mouth_boxes``), ``face_found`` (``bool (N,)``), ``has_audio``, ``audio_path``.
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
        if version != FORMAT_VERSION:
            raise InputError(f"{path} is an avatar of format {version!r}; this lipdub reads format "
                             f"{FORMAT_VERSION}: prepare it again")
        keys = ("fps", "n_frames", "width", "height")
        if any(key not in manifest for key in keys):
            raise InputError(f"{path / MANIFEST_NAME} lacks one of {', '.join(keys)}")
        n = int(manifest["n_frames"])
        arrays = {}
        for name, filename in _ARRAY_FILES.items():
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

    def features(self):
        """The source audio's ``AudioFeatures`` (aligned with the frames), or None."""
        path = self.path / "features.npz"
        if not path.is_file():
            return None
        from lipdub.audio import AudioFeatures

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
        import cv2

        path = self.path / FRAMES_DIR / f"{index:06d}.jpg"
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise InputError(f"avatar frame {path} is missing or damaged")
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    def __len__(self) -> int:
        return self.n_frames

    def __repr__(self) -> str:
        return (f"Avatar({str(self.path)!r}, {self.n_frames} frames, {self.width}x{self.height} "
                f"@ {self.fps:g} fps)")
