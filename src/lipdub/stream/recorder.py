"""Recording a stream to MP4 from its own thread, at lower priority than the stream itself."""

from __future__ import annotations

import queue
import threading
import time

import numpy as np


RECORD_QUEUE = 25          # frames waiting for the recording's encoder (1 s)
RECORD_NICE = 5            # the recording's encoder runs this much nicer than the stream


class Recorder:
    """A ``VideoWriter`` fed from its own thread: recording a stream never holds up the stream.

    ``write(image)`` queues a frame (blocking only while the encoder is ``depth`` frames
    behind, which a real-time-capable encoder preset never is); ``close()`` writes the rest and
    finishes the file, ``abort()`` drops it. ``blocked`` is the time ``write`` spent waiting."""

    def __init__(self, writer, depth: int = RECORD_QUEUE, nice: int = RECORD_NICE):
        self.writer = writer
        self.blocked = 0.0
        self.nice = nice
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="lipdub-record", daemon=True)
        self._thread.start()

    @property
    def path(self):
        return self.writer.path

    def _run(self) -> None:
        written = 0
        while True:
            image = self._queue.get()
            if image is None:
                return
            if self._error is None:
                try:
                    self.writer.write(image)
                except BaseException as error:  # raised to the caller on its next call
                    self._error = error
                written += 1
                if written == 2:  # the encoder's threads exist by now
                    _lower_priority(getattr(getattr(self.writer, "_proc", None), "pid", None), self.nice)

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def write(self, image: np.ndarray) -> None:
        self._check()
        t0 = time.perf_counter()
        self._queue.put(image)
        self.blocked += time.perf_counter() - t0

    def close(self):
        self._queue.put(None)
        self._thread.join()
        try:
            self._check()
        except BaseException:
            self.writer.abort()
            raise
        return self.writer.close()

    def abort(self) -> None:
        self._error = self._error or RuntimeError("recording aborted")
        self._queue.put(None)
        self._thread.join()
        self.writer.abort()


def _lower_priority(pid: int | None, nice: int) -> None:
    """Renice every thread of process ``pid`` (Linux: nice is per thread) by ``nice``, so a
    recording's encoder yields the CPU to the live stream; its queue absorbs the delay."""
    import os

    if not pid or nice <= 0 or not hasattr(os, "setpriority"):
        return
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        tids = [pid]
    for tid in tids:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
        except OSError:
            pass
