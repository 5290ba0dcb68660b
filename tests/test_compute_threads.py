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


def test_overlapping_blocks_keep_the_limit_until_the_last_one_leaves():
    """Two runs in threads: the first to finish must not lift the limit under the other."""
    import threading

    cv2.setNumThreads(2)
    try:
        first_in, first_out, second_done = threading.Event(), threading.Event(), threading.Event()
        seen = {}

        def first():
            with single_compute_threads():
                first_in.set()
                second_done.wait(5)  # wait until the second block has opened
            first_out.set()

        worker = threading.Thread(target=first)
        worker.start()
        first_in.wait(5)
        with single_compute_threads():
            second_done.set()
            first_out.wait(5)  # the first block has closed: we are still inside ours
            seen["inside"] = cv2.getNumThreads()
            seen["blas"] = [i["num_threads"] for i in threadpoolctl.threadpool_info()
                            if i["user_api"] == "blas"]
        worker.join()
        assert seen["inside"] == 1 and all(n == 1 for n in seen["blas"])
        assert cv2.getNumThreads() == 2  # restored once both have left
    finally:
        cv2.setNumThreads(cv2.getNumberOfCPUs())
