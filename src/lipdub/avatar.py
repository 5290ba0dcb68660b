"""Avatars: a video or photo prepared once for dubbing. ``prepare`` is the one preparation step;
it sends footage to ``lipdub.footage`` and photos to ``lipdub.photo.prepare``. The folder both
write, ``Avatar`` that reads it and ``PrepareOptions`` live in ``lipdub.avatar_folder`` (re-exported
here), which both kinds import; neither imports the other or this module.
"""

from __future__ import annotations

import os
from pathlib import Path

from lipdub.avatar_folder import (FORMAT_VERSION, FRAMES_DIR, MANIFEST_NAME, Avatar,  # noqa: F401
                                  PrepareOptions, check_destination, file_sha256,
                                  install_avatar_dir, new_work_dir, store_track)
from lipdub.errors import InputError
from lipdub.progress import ProgressFn


def prepare(input_path: str | os.PathLike, out_dir: str | os.PathLike,
            options: PrepareOptions = PrepareOptions(), progress: ProgressFn | None = None,
            overwrite: bool = False, photo=None) -> Avatar:
    """Prepare the avatar folder ``out_dir`` from a video (any edit: shots, people, frames
    without a face; see ``lipdub.footage``) or a photo.

    A photo becomes an idle-motion template (``photo``: ``lipdub.photo.PhotoOptions``; by default
    10 s with blinks, slight head motion and breathing), so it can be dubbed like footage;
    ``PhotoOptions(seconds=0)`` stores it as one still frame instead.

    Raises InputError (unreadable input), NoFaceError (no usable face anywhere, or in fewer than
    ``min_face_fraction`` of the frames) and OutputError (``out_dir`` holds an avatar and
    ``overwrite`` is False, or holds something else, or can't be written).
    """
    from lipdub.video import probe

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
    from lipdub.footage import prepare_footage

    return prepare_footage(source, out_dir, options, progress, overwrite,
                           has_audio=info.has_audio and not info.is_image, is_image=info.is_image)
