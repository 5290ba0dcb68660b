"""One compute thread for NumPy's BLAS and for OpenCV while generating.

Both libraries start a worker per core and leave it spinning after each call (OpenBLAS for a
mid-sized product such as the bank distances or the motion model's pose algebra, OpenCV for
every resize and remap). On the 2-core machine that spinning took the encoder's core: the
render + paste microbenchmark used 4.3-5.0 ms of CPU a frame for 2.4 ms of work, and
``generate`` of 30 s used ~2 s more CPU than it needed. Their parallel speed-up on these small
images is below 0.1 ms a frame."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

# The limits are process-wide, and runs overlap (the server's thread-isolated jobs, live streams,
# API callers, the Whisper pass inside generate): the first run in sets them, the last one out
# restores them. Each run restoring what it found would let the first to finish lift the
# limit under the others, and the last leave it set for good.
_LOCK = threading.Lock()
_USERS = 0
_RESTORE: ExitStack | None = None


@contextmanager
def single_compute_threads() -> Iterator[None]:
    """BLAS (through threadpoolctl) and OpenCV on one thread inside the block (nestable, and
    shared by blocks open at once in several threads)."""
    global _USERS, _RESTORE
    with _LOCK:
        if _USERS == 0:
            _RESTORE = _limit_to_one()
        _USERS += 1
    try:
        yield
    finally:
        with _LOCK:
            _USERS -= 1
            if _USERS == 0 and _RESTORE is not None:
                _RESTORE.close()
                _RESTORE = None


def _limit_to_one() -> ExitStack:
    import cv2
    from threadpoolctl import threadpool_limits

    stack = ExitStack()
    try:
        before = cv2.getNumThreads()
        stack.callback(cv2.setNumThreads, before)
        cv2.setNumThreads(1)
        stack.enter_context(threadpool_limits(limits=1, user_api="blas"))
    except BaseException:
        stack.close()
        raise
    return stack
