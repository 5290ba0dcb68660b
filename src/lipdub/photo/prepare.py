"""`lipdub prepare photo.jpg -o AVATAR`: an avatar whose frames are the photo's idle template.

Every downstream stage then sees an ordinary multi-frame avatar (manifest ``kind = "photo"``);
the stored landmarks are the idle warp's own targets, exact, so nothing is re-tracked (a tracker
would only add jitter and smear the blinks). The folder is written with ``lipdub.avatar_folder``'s
helpers (destination check, track store, atomic install), so the format keeps one owner.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from lipdub.errors import InputError, NoFaceError, OutputError
from lipdub.progress import ProgressFn


@dataclass(frozen=True)
class PhotoOptions:
    """How a photo is animated while it is not speaking (see ``idle.make_idle_template``)."""

    seconds: float = 10.0
    seed: int = 0
    blink: bool = True
    head_motion: float = 1.0
    breathing: float = 1.0


def load_photo(path: str | os.PathLike, max_size: int | None = None,
               face_index: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(RGB image, landmarks (478, 3)) of a photo; InputError / NoFaceError for bad input."""
    from lipdub.face import FaceTracker
    from lipdub.video import probe, read_frames

    info = probe(path)
    if not info.is_image:
        raise InputError(f"not a photo: {path}")
    image = next(read_frames(path, max_size=max_size))
    with FaceTracker(mode="image", face_index=face_index) as tracker:
        landmarks = tracker.track(image)
    if landmarks is None:
        raise NoFaceError(f"no face found in {path}")
    return image, landmarks


def prepare_photo(image_path: str | os.PathLike, out_dir: str | os.PathLike,
                  options: PhotoOptions = PhotoOptions(), prepare_options=None,
                  progress: ProgressFn | None = None, overwrite: bool = False):
    """Write an avatar folder at ``out_dir`` from a photo; returns the ``Avatar``.

    Same folder format as footage avatars (``lipdub.avatar_folder``'s destination check, track store and
    atomic install are reused), plus ``manifest["kind"] = "photo"`` and ``manifest["photo"]`` (the
    idle options). ``prepare_options`` is ``lipdub.avatar_folder.PrepareOptions`` (fps, max_size,
    face_index, jpeg_quality); its ``smooth`` is ignored: the landmarks are exact.
    """
    import shutil
    import time

    import cv2

    from lipdub import __version__
    from lipdub import avatar_folder as av
    from lipdub.photo.idle import make_idle_template
    from lipdub.progress import Progress

    started = time.perf_counter()
    popts = prepare_options if prepare_options is not None else av.PrepareOptions()
    source, out_dir = Path(image_path), Path(out_dir)
    av.check_destination(out_dir, overwrite)
    image, landmarks = load_photo(source, popts.max_size, popts.face_index)
    template = make_idle_template(image, landmarks, seconds=options.seconds, fps=popts.fps,
                                  seed=options.seed, blink=options.blink,
                                  head_motion=options.head_motion, breathing=options.breathing)
    work = av.new_work_dir(out_dir)
    try:
        frames_dir = work / av.FRAMES_DIR
        frames_dir.mkdir()
        params = [cv2.IMWRITE_JPEG_QUALITY, int(popts.jpeg_quality)]
        with Progress(template.n_frames, "prepare photo", callback=progress) as bar:
            for i, frame in enumerate(template):
                path = frames_dir / f"{i:06d}.jpg"
                if not cv2.imwrite(str(path), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), params):
                    raise OutputError(f"cannot write {path}")
                bar.update(1)
        h, w = image.shape[:2]
        found = np.ones(template.n_frames, bool)
        av.store_track(work, template.landmarks, found, 1, w, h)
        seconds = time.perf_counter() - started
        n = template.n_frames
        manifest = {
            "format_version": av.FORMAT_VERSION, "lipdub_version": __version__,
            "source": source.name, "source_sha256": av.file_sha256(source), "source_is_image": True,
            "fps": float(popts.fps), "n_frames": n, "width": w, "height": h,
            "settings": asdict(popts), "has_audio": False, "has_features": False,
            "audio_seconds": 0.0, "frames_with_face": n, "prepare_seconds": round(seconds, 3),
            "prepare_fps": round(n / seconds, 2),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "kind": "photo",
            "photo": {**asdict(options), "blinks": int((np.diff((template.closure > 0.5)
                                                                .astype(int)) == 1).sum())},
        }
        (work / av.MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
        av.install_avatar_dir(work, out_dir, overwrite)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return av.Avatar.load(out_dir)
