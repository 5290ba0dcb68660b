"""User-facing errors.

Every failure a user can cause (bad path, not a media file, no face, ...) is raised as a
``LipdubError`` with a one-line message; the CLI prints it as ``lipdub: error: ...`` and exits
non-zero, the server turns it into a 4xx. Anything else is a bug and keeps its traceback.
"""


class LipdubError(Exception):
    """An error caused by the input or the environment, explained in one line."""

    exit_code = 1


class InputError(LipdubError):
    """The input file is missing, unreadable, corrupt, or of the wrong kind."""

    exit_code = 2


class NoFaceError(LipdubError):
    """No usable face was found in the input."""

    exit_code = 3


class OutputError(LipdubError):
    """The output location cannot be written."""

    exit_code = 4


class MissingDependencyError(LipdubError):
    """A required package or bundled model is absent; the message names the fix."""

    exit_code = 5
