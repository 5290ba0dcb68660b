"""background(): order, bounded look-ahead, errors raised in the consumer, early exit stops it."""

from __future__ import annotations

import threading
import time

import pytest

from lipdub.background import background


def test_order_and_bounded_lookahead():
    made = []

    def produce():
        for i in range(50):
            made.append(i)
            yield i

    seen = []
    for item in background(produce(), depth=3):
        time.sleep(0.002)
        # the producer never runs more than depth (+1 in hand) ahead of the consumer
        assert len(made) - len(seen) <= 3 + 2
        seen.append(item)
    assert seen == list(range(50))


def test_producer_error_is_raised_in_the_consumer():
    def produce():
        yield 1
        raise KeyError("boom")

    got = []
    with pytest.raises(KeyError, match="boom"):
        for item in background(produce()):
            got.append(item)
    assert got == [1]


def test_leaving_early_stops_and_closes_the_producer():
    closed = threading.Event()

    def produce():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.set()

    for item in background(produce(), depth=2):
        if item == 5:
            break
    assert closed.wait(2.0)
    assert not any(t.name == "lipdub-ahead" for t in threading.enumerate())


def test_depth_must_be_positive():
    with pytest.raises(ValueError):
        list(background([1], depth=0))
