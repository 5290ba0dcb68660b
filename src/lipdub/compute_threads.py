"""One compute thread for NumPy's BLAS and for OpenCV while generating.

Both libraries start a worker per core and leave it spinning after each call (OpenBLAS for a
mid-sized product such as the bank distances or the motion model's pose algebra, OpenCV for
every resize and remap). On the 2-core machine that spinning took the encoder's core: the
render + paste microbenchmark used 4.3-5.0 ms of CPU a frame for 2.4 ms of work, and
``generate`` of 30 s used ~2 s more CPU than it needed. Their parallel speed-up on these small
images is below 0.1 ms a frame."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def single_compute_threads() -> Iterator[None]:
    """BLAS (through threadpoolctl) and OpenCV on one thread inside the block."""
    import cv2
    from threadpoolctl import threadpool_limits

    blas = threadpool_limits(limits=1, user_api="blas")
    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        with blas:
            yield
    finally:
        cv2.setNumThreads(before)
