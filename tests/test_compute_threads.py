"""compute_threads: one OpenCV and one BLAS thread inside, restored after."""

import cv2
import pytest
import threadpoolctl

from lipdub.compute_threads import single_compute_threads


def test_single_compute_threads_limits_and_restores():
    cv2.setNumThreads(2)
    try:
        with single_compute_threads():
            assert cv2.getNumThreads() == 1
        assert cv2.getNumThreads() == 2
        with pytest.raises(RuntimeError), single_compute_threads():
            raise RuntimeError("restored on errors too")
        assert cv2.getNumThreads() == 2
    finally:
        cv2.setNumThreads(cv2.getNumberOfCPUs())


def test_blas_is_limited_inside():
    with single_compute_threads():
        blas = [i for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
        assert blas and all(i["num_threads"] == 1 for i in blas)
