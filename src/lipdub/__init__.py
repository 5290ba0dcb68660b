"""lipdub: make the person in a video or photo say any speech audio, offline, on a CPU."""

__version__ = "0.1.0"

from lipdub.errors import LipdubError  # noqa: E402

__all__ = ["LipdubError", "__version__"]
