"""``CeleryQueue``: the server side of scale-out, a ``JobQueue`` that runs jobs on Celery workers.

The SQLite store stays the only source of truth for the API. Workers never touch it: they send
events to a Redis stream owned by this queue, and one thread here (the "pump") applies them to
the store, then acknowledges them, so events survive a server restart (Redis keeps unacknowledged
entries). We chose a stream over HTTP callbacks so that workers need to reach only Redis and the
storage, never the server, and keep working while it restarts; and over Celery's result backend,
which carries only a final state and would have to be polled task by task.

The pump also
- publishes queued jobs that are runnable (no dependency, or it is done) and not yet on the
  broker: new jobs while the broker was down, jobs whose dependency just finished, and everything
  again after Redis lost its data;
- watches the leases of running jobs: a job whose worker stopped renewing it is re-queued (a new
  attempt, another worker) or, after ``max_attempts`` starts, failed with the reason;
- forwards cancel requests that could not reach Redis when they were made.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
import uuid
from pathlib import Path

from lipdub.scale import protocol as P
from lipdub.jobstore.runner import lock_data_dir
from lipdub.jobstore.store import Store

log = logging.getLogger("lipdub.scale")

#: What a worker must fetch or upload for each job kind: "avatars" are folders cached per worker,
#: "outputs" are written by the job and uploaded; any other string input is fetched as is.
JOB_IO = {"prepare": {"outputs": ["avatar_dir"]}, "generate": {"avatars": ["avatar_dir"]}}
#: Seconds between two maintenance passes (publish, leases, cancels) of the pump.
PASS_INTERVAL = 0.5
#: A job key left without "published" this long means its publish failed half-way.
UNPUBLISHED_GRACE = 30.0
#: An event whose handling fails this often for another reason than the broker or the job store
#: (a malformed event, a bug) is dropped, logged, so it cannot hold up every event behind it.
MAX_EVENT_ATTEMPTS = 3


class CeleryQueue:
    def __init__(self, store: Store, data_dir: Path, broker: str, *, max_attempts: int = 3,
                 owner: str = "server", timing: P.Timing | None = None):
        self.store = store
        self.data_dir = Path(data_dir)
        self.broker = broker
        self.max_attempts = max_attempts
        self.owner = owner
        self.stream = P.events_key(owner)
        self.timing = timing or P.Timing.from_env()
        self.redis = P.redis_client(broker)
        self.celery = P.celery_app(broker, self.timing)
        self._errors = P.broker_errors()
        import redis

        self._redis = redis
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock_file = None
        self._missing_since: dict[str, float] = {}
        self._event_failures: dict[str, int] = {}
        self.broker_ok = False
        self.broker_error: str | None = None

    # -- JobQueue -------------------------------------------------------------------------------

    def submit(self, kind, inputs, options, *, job_id=None, avatar_id=None, after=None):
        job = self.store.add_job(kind, {"inputs": inputs, "options": options}, job_id=job_id,
                                 avatar_id=avatar_id, after=after)
        if after is None and self.broker_ok:
            try:  # publish now, so a job starts without waiting for the pump's next pass
                self._publish(job)
            except self._errors as exc:
                self._broker_down(exc)  # the job stays queued; the pump publishes it later
        self._wake.set()
        return job

    def cancel(self, job_id):
        job = self.store.request_cancel(job_id)
        if job is not None:
            try:
                self._forward_cancel(job)
            except self._errors as exc:
                self._broker_down(exc)  # the pump forwards it once the broker is back
        self._wake.set()
        return job

    def start(self) -> None:
        # One consumer per store: a second server on the same data dir would apply events twice.
        self._lock_file = lock_data_dir(self.data_dir)
        self._stop.clear()
        self._check_broker()
        self._thread = threading.Thread(target=self._pump, name="lipdub-pump", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop consuming. Jobs on workers go on; their events wait in Redis for the next start."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def status(self) -> dict:
        workers, slots = self.live_workers()
        counts = self.store.counts()
        return {"backend": "celery", "broker": P.redact(self.broker), "broker_ok": self.broker_ok,
                "broker_error": self.broker_error, "workers": workers, "slots": slots,
                "alive": workers, "busy": counts["running"],
                "running": bool(self._thread and self._thread.is_alive()) and self.broker_ok}

    def live_workers(self) -> tuple[int, int]:
        """Workers seen within a lease period, and their job slots (0, 0 when Redis is down)."""
        if not self.broker_ok:
            return 0, 0
        try:
            entries = self.redis.hgetall(P.WORKERS_KEY)
        except self._errors:
            return 0, 0
        now, workers, slots = time.time(), 0, 0
        for raw in entries.values():
            info = json.loads(raw)
            if now - info.get("ts", 0) < self.timing.lease_ttl:
                workers += 1
                slots += int(info.get("concurrency", 1))
        return workers, slots

    # -- publishing -----------------------------------------------------------------------------

    def _publish(self, job: dict) -> None:
        """Send one attempt of a job. The key is written first so a worker that receives the
        message at once finds its token; 'published' marks that the send went through."""
        token = uuid.uuid4().hex
        key = P.job_key(job["id"])
        self.redis.hset(key, mapping={"token": token, "reply": self.stream, "created": time.time()})
        params = job["params"] or {}
        message = {"job_id": job["id"], "token": token, "kind": job["kind"],
                   "inputs": params.get("inputs", {}), "options": params.get("options", {}),
                   "io": JOB_IO.get(job["kind"], {}), "reply": self.stream,
                   "max_attempts": self.max_attempts, "queued_at": job["created"]}
        self.celery.send_task(P.TASK, args=[message], queue=P.QUEUE, task_id=f"{job['id']}-{token[:8]}",
                              retry=False)
        self.redis.hset(key, "published", time.time())

    def _publish_runnable(self) -> None:
        jobs = self.store.runnable()
        if not jobs:
            return
        pipe = self.redis.pipeline()
        for job in jobs:
            pipe.hmget(P.job_key(job["id"]), "published", "created")
        now = time.time()
        for job, (published, created) in zip(jobs, pipe.execute()):
            stuck = created is not None and published is None and now - float(created) > UNPUBLISHED_GRACE
            if created is None or stuck:
                self._publish(job)

    def _forward_cancel(self, job: dict) -> None:
        key = P.job_key(job["id"])
        if job["state"] == "cancelled":
            self.redis.delete(key)  # a queued message is now stale: the worker drops it
        elif job["state"] == "running" and job["cancel_requested"]:
            if self.redis.exists(key):
                self.redis.hset(key, "cancel", "1")

    # -- the pump -------------------------------------------------------------------------------

    def _pump(self) -> None:
        next_pass = 0.0
        fresh = True  # after (re)connecting, first re-read events delivered but not yet applied
        while not self._stop.is_set():
            try:
                if fresh:
                    self._ensure_group()
                    self._drain(pending=True)
                    fresh = False
                self._drain(block_ms=int(PASS_INTERVAL * 1000))
                if time.monotonic() >= next_pass or self._wake.is_set():
                    self._wake.clear()
                    self._maintain()
                    next_pass = time.monotonic() + PASS_INTERVAL
                if not self.broker_ok:
                    log.warning("broker %s is reachable again", P.redact(self.broker))
                self.broker_ok, self.broker_error = True, None
            except self._errors as exc:
                self._broker_down(exc)
                fresh = True
                self._stop.wait(1.0)
            except self._redis.exceptions.ResponseError as exc:
                if "NOGROUP" not in str(exc):  # else Redis restarted empty: make the group again
                    log.exception("scale queue pump error")
                    self._stop.wait(1.0)
                fresh = True
            except Exception:  # a bug, or a store that cannot be written (disk full): go on
                log.exception("scale queue pump error")
                fresh = True  # events not acknowledged yet are read again, so none is lost
                self._stop.wait(1.0)

    def _broker_down(self, exc: BaseException) -> None:
        if self.broker_ok or self.broker_error is None:
            log.warning("broker %s unreachable (%s); jobs stay queued until it is back",
                        P.redact(self.broker), exc)
        self.broker_ok = False
        self.broker_error = f"broker unreachable: {type(exc).__name__}: {exc}"

    def _check_broker(self) -> None:
        try:
            self.redis.ping()
            self.broker_ok, self.broker_error = True, None
        except self._errors as exc:
            self._broker_down(exc)

    def _ensure_group(self) -> None:
        import redis

        try:
            self.redis.xgroup_create(self.stream, "owner", id="0", mkstream=True)
        except redis.exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _drain(self, *, pending: bool = False, block_ms: int = 0) -> None:
        """Apply events and acknowledge them. ``pending``: those read before but never
        acknowledged (the server stopped in between). Otherwise wait up to ``block_ms`` for new
        ones, in short slices so a submit or cancel (which sets _wake) is handled promptly."""
        deadline = time.monotonic() + block_ms / 1000
        while True:
            block = 50 if block_ms and not pending else None
            resp = self.redis.xreadgroup("owner", "pump", {self.stream: "0" if pending else ">"},
                                         count=500, block=block)
            entries = resp[0][1] if resp else []
            for entry_id, fields in entries:
                if fields:  # a pending entry trimmed from the stream reads back empty
                    self._apply_entry(entry_id, fields)
                self.redis.xack(self.stream, "owner", entry_id)
            if pending:
                if not entries:
                    return
            elif entries or self._wake.is_set() or time.monotonic() >= deadline:
                return

    def _apply_entry(self, entry_id, fields: dict) -> None:
        """Apply one event. A failure propagates (the event and those after it stay
        unacknowledged and are read again) unless the same event already failed
        ``MAX_EVENT_ATTEMPTS`` times for a reason other than the broker or the store: then it is
        logged and dropped. Broker and store failures never drop an event (nothing else could be
        applied either; they are retried until they pass)."""
        try:
            self._apply(P.decode_event(fields))
        except (*self._errors, self._redis.exceptions.ResponseError, OSError, sqlite3.Error):
            raise
        except Exception as exc:
            attempts = self._event_failures.get(entry_id, 0) + 1
            if attempts < MAX_EVENT_ATTEMPTS:
                self._event_failures[entry_id] = attempts
                raise
            self._event_failures.pop(entry_id, None)
            log.error("scale event %s dropped after %d failed attempts: %s: %s (fields %s)",
                      entry_id, attempts, type(exc).__name__, exc, str(fields)[:200])
            return
        self._event_failures.pop(entry_id, None)

    def _current(self, event: dict) -> bool:
        """Events of a superseded attempt are ignored (none exists after Redis lost its data)."""
        token = self.redis.hget(P.job_key(event["job"]), "token")
        return token is None or token == event["token"]

    def _apply(self, ev: dict) -> None:
        job_id, kind = ev["job"], ev["type"]
        if kind == "progress":
            self.store.set_progress(job_id, ev.get("stage", ""), float(ev.get("fraction", 0.0)))
        elif kind == "started":
            if self._current(ev) and not self.store.mark_started(job_id, ev["worker"]):
                job = self.store.get_job(job_id)
                if job is None or job["state"] != "running":
                    # Cancelled while its message was on the way: tell that worker to stop.
                    key = P.job_key(job_id)
                    self.redis.hset(key, mapping={"token": ev["token"], "cancel": "1"})
                    self.redis.expire(key, 3600)
        elif kind == "finished":
            if not self._current(ev):
                return
            state = ev["state"]
            if state == "requeue":
                self.store.requeue(job_id, ev.get("error") or "re-queued by its worker")
            else:
                self.store.finish(job_id, state, error=ev.get("error"), result=ev.get("result"))
            self.redis.delete(P.job_key(job_id))
            self._wake.set()  # jobs waiting on this one may run now
            log.info("job %s %s on %s%s", job_id, state, ev["worker"],
                     f": {ev['error']}" if ev.get("error") else "")

    def _maintain(self) -> None:
        self._publish_runnable()
        self._reap()

    def _reap(self) -> None:
        """Running jobs whose lease lapsed: their worker died (or lost the broker for too long)."""
        running = self.store.running()
        if not running:
            self._missing_since.clear()
            return
        pipe = self.redis.pipeline()
        for job in running:
            pipe.exists(P.lease_key(job["id"]))
        now = time.monotonic()
        lapsed = []
        for job, held in zip(running, pipe.execute()):
            if job["cancel_requested"]:
                self._forward_cancel({**job, "state": "running"})
            if held:
                self._missing_since.pop(job["id"], None)
            elif now - self._missing_since.setdefault(job["id"], now) >= self.timing.lease_ttl:
                lapsed.append(job)
        self._missing_since = {k: v for k, v in self._missing_since.items()
                               if k in {j["id"] for j in running}}
        if not lapsed:
            return
        # A worker sends "finished" before it drops its lease: read what came in meanwhile.
        self._drain()
        for job in lapsed:
            current = self.store.get_job(job["id"])
            if current is None or current["state"] != "running" or self.redis.exists(P.lease_key(job["id"])):
                continue
            self._missing_since.pop(job["id"], None)
            self.redis.delete(P.job_key(job["id"]))  # any copy of the lost attempt is now stale
            who = current["worker"] or "a worker"
            if current["cancel_requested"]:
                self.store.finish(job["id"], "cancelled")
            elif current["attempts"] >= self.max_attempts:
                self.store.finish(job["id"], "failed", error=(
                    f"its worker stopped while running it, {current['attempts']} times (last: {who}); "
                    "giving up"))
                log.error("job %s failed: killed its worker %d times", job["id"], current["attempts"])
            else:
                self.store.requeue(job["id"], f"re-queued: its worker {who} stopped responding",
                                   count_attempt=True)
                log.warning("job %s re-queued: worker %s stopped responding", job["id"], who)
        self._wake.set()
