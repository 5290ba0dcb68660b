"""lipdub: make the person in a video or photo say any speech audio, offline, on a CPU.

Python API (imported lazily, so ``import lipdub`` stays light)::

    avatar = lipdub.Avatar.prepare("me.mp4", "avatars/me")   # ready to dub: no training step
    lipdub.generate(avatar, "speech.wav", "out.mp4", fade_in=25)
    for frame in lipdub.frames(avatar, "speech.wav"): ...
"""

__version__ = "0.1.0"

from lipdub.errors import LipdubError  # noqa: E402

#: name -> module it lives in, imported on first use
_LAZY = {
    "Avatar": "lipdub.api",
    "generate": "lipdub.api",
    "frames": "lipdub.api",
    "GenerateOptions": "lipdub.pipeline",
    "TrainOptions": "lipdub.render.train",
    "PrepareOptions": "lipdub.avatar",
    "run_batch": "lipdub.batch",
    "stream": "lipdub.stream",
    "StreamOptions": "lipdub.stream",
    "Streamer": "lipdub.stream",
}

__all__ = ["LipdubError", "__version__", *_LAZY]


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lipdub' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
