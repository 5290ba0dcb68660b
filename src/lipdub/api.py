"""The Python API: prepare an avatar, then dub speech onto it (no training needed).

    import lipdub

    avatar = lipdub.Avatar.prepare("me.mp4", "avatars/me")   # or lipdub.Avatar.load("avatars/me")
    # avatar.train(minutes=20)                               # optional U-Net refinement
    lipdub.generate(avatar, "speech.wav", "out.mp4", fade_in=25)
    for frame in lipdub.frames(avatar, "speech.wav"):         # RGB uint8 (H, W, 3), one per 1/fps
        ...

Keyword options of ``generate``/``frames`` are ``GenerateOptions`` fields; of ``train``,
``TrainOptions`` fields; of ``Avatar.prepare``, ``PrepareOptions`` fields.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Iterator

import numpy as np

from lipdub import avatar as _avatar
from lipdub.pipeline import GenerateOptions
from lipdub.progress import ProgressFn


def _options(cls, options, kwargs: dict):
    base = options if options is not None else cls()
    if not kwargs:
        return base
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(kwargs) - names)
    if unknown:
        raise TypeError(f"unknown {cls.__name__} option(s): {', '.join(unknown)} "
                        f"(known: {', '.join(sorted(names))})")
    return dataclasses.replace(base, **kwargs)


class Avatar(_avatar.Avatar):
    """A prepared avatar folder (see ``lipdub.avatar_folder.Avatar``) with ``prepare`` and the
    optional ``train``."""

    @classmethod
    def prepare(cls, source: str | os.PathLike, folder: str | os.PathLike,
                options: "_avatar.PrepareOptions | None" = None, *, overwrite: bool = False,
                progress: ProgressFn | None = None, **kwargs) -> "Avatar":
        """Prepare ``source`` (a video, edited or not, or a photo) into ``folder``: ready to dub.
        Keywords are ``PrepareOptions`` fields, e.g. ``face_index=1`` or ``face_point=(0.7, 0.4)``."""
        opts = _options(_avatar.PrepareOptions, options, kwargs)
        _avatar.prepare(source, folder, opts, progress, overwrite=overwrite)
        return cls.load(folder)

    @property
    def trained(self) -> bool:
        """Whether the folder holds the optional trained U-Net (generate then uses it)."""
        from lipdub.render.export import ONNX_FILE

        return (Path(self.path) / ONNX_FILE).is_file()

    def train(self, options=None, *, progress: ProgressFn | None = None, **kwargs) -> Path:
        """Optional: train this avatar's U-Net refinement (``TrainOptions`` fields as keywords,
        e.g. ``minutes=20``); returns the ONNX file. Measured gain over the network-free default:
        under 0.002 mouth SSIM after 4 minutes (``benchmarks/render_eval.py``)."""
        from lipdub.render.train import TrainOptions, train_renderer

        return train_renderer(self, _options(TrainOptions, options, kwargs), progress)


def generate(avatar, audio, output, options: GenerateOptions | None = None, *,
             progress: ProgressFn | None = None, **kwargs) -> Path:
    """Write ``output`` (MP4): ``avatar`` (an ``Avatar``, an avatar folder or a raw video, then
    prepared once and cached) saying ``audio``. Keywords are ``GenerateOptions`` fields."""
    from lipdub.pipeline import generate as _generate

    return _generate(avatar, audio, output, _options(GenerateOptions, options, kwargs), progress)


def frames(avatar, audio, options: GenerateOptions | None = None, *,
           progress: ProgressFn | None = None, **kwargs) -> Iterator[np.ndarray]:
    """The output frames (RGB uint8 ``(H, W, 3)``) instead of a file, streamed."""
    from lipdub.pipeline import frames as _frames

    return _frames(avatar, audio, _options(GenerateOptions, options, kwargs), progress)
