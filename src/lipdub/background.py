"""Run a producer a bounded number of items ahead of its consumer, in a thread.

``generate`` renders frames in one thread while the main thread hands finished ones to the
encoder: the pipe write to ffmpeg blocks until ffmpeg has read the frame, and without a queue
between them the renderer sat idle through every write and the encoder through every render.
OpenCV, the JPEG decoder, onnxruntime and pipe writes all release the GIL, so the two threads
really run on two cores. The queue is bounded, so memory stays a few frames whatever the length.
"""

from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")

_DONE = object()


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


def background(items: Iterable[T], depth: int = 8, name: str = "lipdub-ahead") -> Iterator[T]:
    """Yield ``items`` in order, produced in a worker thread at most ``depth`` items ahead.

    The worker iterates (and finally closes) ``items`` itself, so a generator is only ever run
    by one thread. An exception in the producer is raised here, at the point it would have
    been; leaving the loop early stops the worker within a fraction of a second."""
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        source = iter(items)
        try:
            for item in source:
                if not put(item):
                    break
            else:
                put(_DONE)
        except BaseException as error:  # handed to the consumer, raised there
            put(_Failed(error))
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=work, name=name, daemon=True)
    worker.start()
    try:
        while True:
            item = slots.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        # no timeout: the worker ends after its current item, and must not outlive the caller
        # (it holds the renderer and the features; a slow first chunk can take seconds)
        worker.join()
