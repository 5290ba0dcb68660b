"""scale.dispatch: an event that keeps failing is dropped, not replayed forever in front of the
others; broker and store failures are retried, never dropped. A fake Redis: no server needed."""

from __future__ import annotations

import json
import sqlite3
import threading

import pytest

pytest.importorskip("redis")
pytest.importorskip("kombu")

from lipdub.scale import dispatch as D  # noqa: E402
from lipdub.scale import protocol as P  # noqa: E402


class FakeRedis:
    """Serves the same pending batch at every read, minus what was acknowledged (as Redis does
    for a consumer group's pending entries)."""

    def __init__(self, entries):
        self.entries = list(entries)
        self.acked: list[str] = []

    def xreadgroup(self, group, consumer, streams, count, block):
        left = [(i, f) for i, f in self.entries if i not in self.acked]
        return [("events", left)] if left else []

    def xack(self, stream, group, entry_id):
        self.acked.append(entry_id)


def queue_with(entries, apply):
    import redis

    q = D.CeleryQueue.__new__(D.CeleryQueue)  # no broker: only the event path is exercised
    q.redis, q.stream, q._wake, q._event_failures = FakeRedis(entries), "events", threading.Event(), {}
    q._errors, q._redis, q._apply = P.broker_errors(), redis, apply
    return q


def event(job: str) -> dict:
    return {"data": json.dumps({"job": job, "type": "progress", "stage": "x", "fraction": 0.5})}


def pump(q, rounds: int) -> int:
    """What the pump does after an error: read the pending events again. Returns the failures."""
    failures = 0
    for _ in range(rounds):
        try:
            q._drain(pending=True)
        except Exception:
            failures += 1
    return failures


def test_an_event_that_keeps_failing_is_dropped_and_the_rest_applied():
    applied = []

    def apply(ev):
        if ev["job"] == "poison":
            raise RuntimeError("a bug in handling this event")
        applied.append(ev["job"])

    q = queue_with([("1-0", event("a")), ("2-0", event("poison")), ("3-0", event("b"))], apply)
    failures = pump(q, D.MAX_EVENT_ATTEMPTS + 1)
    assert failures == D.MAX_EVENT_ATTEMPTS - 1  # retried, then dropped on the last attempt
    assert applied == ["a", "b"] and q.redis.acked == ["1-0", "2-0", "3-0"]
    assert q._event_failures == {}


def test_a_store_that_cannot_be_written_never_loses_an_event():
    calls = []

    def apply(ev):
        calls.append(ev["job"])
        raise sqlite3.OperationalError("database or disk is full")

    q = queue_with([("1-0", event("a")), ("2-0", event("b"))], apply)
    assert pump(q, 2 * D.MAX_EVENT_ATTEMPTS) == 2 * D.MAX_EVENT_ATTEMPTS
    assert q.redis.acked == [] and set(calls) == {"a"}  # still first in line, still pending


def test_a_malformed_event_does_not_block_the_stream():
    applied = []
    q = queue_with([("1-0", {"data": "{not json"}), ("2-0", event("b"))],
                   lambda ev: applied.append(ev["job"]))
    pump(q, D.MAX_EVENT_ATTEMPTS)
    assert applied == ["b"] and q.redis.acked == ["1-0", "2-0"]
