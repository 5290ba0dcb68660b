"""SQLite record of jobs and avatars: the queue's only shared state.

Everything a worker or an API call needs to know about a job is a row here, never an object in
memory, so a restarted server (or a batch client) sees the same queue. Writes are short; WAL mode
lets readers go on while a worker records progress. Both queues use it: the server's in-process
pool (claim) and the broker-backed one (mark_started, runnable, running).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

STATES = ("queued", "running", "done", "failed", "cancelled")
FINAL = ("done", "failed", "cancelled")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    stage TEXT NOT NULL DEFAULT '',
    progress REAL NOT NULL DEFAULT 0,
    error TEXT,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    after TEXT,
    avatar_id TEXT,
    worker TEXT,
    params TEXT NOT NULL DEFAULT '{}',
    result TEXT
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state, created);
CREATE TABLE IF NOT EXISTS avatars (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    source_kind TEXT NOT NULL,
    job_id TEXT NOT NULL
);
"""


def new_id() -> str:
    return uuid.uuid4().hex


def _row(row: sqlite3.Row | None) -> dict[str, Any] | None:
    if row is None:
        return None
    d = dict(row)
    for key in ("params", "result"):
        if key in d and d[key] is not None:
            d[key] = json.loads(d[key])
    if "cancel_requested" in d:
        d["cancel_requested"] = bool(d["cancel_requested"])
    return d


class Store:
    """Thread-safe access to the job/avatar database (one connection, one lock)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        # Autocommit; claim() opens an explicit write transaction so two workers, even in two
        # processes, can never take the same job.
        self._db = sqlite3.connect(str(path), timeout=30, isolation_level=None,
                                   check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _one(self, sql: str, args: tuple = ()) -> dict[str, Any] | None:
        with self._lock:
            return _row(self._db.execute(sql, args).fetchone())

    def _all(self, sql: str, args: tuple = ()) -> list[dict[str, Any]]:
        with self._lock:
            return [_row(r) for r in self._db.execute(sql, args).fetchall()]

    def _exec(self, sql: str, args: tuple = ()) -> int:
        with self._lock:
            return self._db.execute(sql, args).rowcount

    # -- jobs ---------------------------------------------------------------------------------

    def add_job(self, kind: str, params: dict, *, job_id: str | None = None,
                avatar_id: str | None = None, after: str | None = None) -> dict[str, Any]:
        job_id = job_id or new_id()
        stage = "waiting for the avatar" if after else "queued"
        self._exec("INSERT INTO jobs (id, kind, state, stage, created, after, avatar_id, params) "
                   "VALUES (?, ?, 'queued', ?, ?, ?, ?, ?)",
                   (job_id, kind, stage, time.time(), after, avatar_id, json.dumps(params)))
        return self.get_job(job_id)

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        return self._one("SELECT * FROM jobs WHERE id = ?", (job_id,))

    def list_jobs(self, limit: int = 100, offset: int = 0, state: str | None = None,
                  kind: str | None = None) -> list[dict[str, Any]]:
        where, args = [], []
        if state:
            where.append("state = ?")
            args.append(state)
        if kind:
            where.append("kind = ?")
            args.append(kind)
        sql = "SELECT * FROM jobs" + (" WHERE " + " AND ".join(where) if where else "")
        # rowid breaks ties between jobs created within the clock's resolution.
        sql += " ORDER BY created DESC, rowid DESC LIMIT ? OFFSET ?"
        return self._all(sql, (*args, limit, offset))

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
        out = {s: 0 for s in STATES}
        out.update({r[0]: r[1] for r in rows})
        return out

    def claim(self, worker: str) -> dict[str, Any] | None:
        """Take the oldest runnable queued job (its dependency done), marking it running."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                self._fail_orphans()
                row = db.execute(
                    "SELECT j.id FROM jobs j LEFT JOIN jobs d ON d.id = j.after "
                    "WHERE j.state = 'queued' AND (j.after IS NULL OR d.state = 'done' OR d.id IS NULL) "
                    "ORDER BY j.created, j.rowid LIMIT 1").fetchone()
                if row is None:
                    db.execute("COMMIT")
                    return None
                db.execute("UPDATE jobs SET state = 'running', stage = 'starting', progress = 0, "
                           "started = ?, attempts = attempts + 1, worker = ? WHERE id = ?",
                           (time.time(), worker, row[0]))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return self.get_job(row[0])

    def _fail_orphans(self) -> None:
        """Fail queued jobs whose dependency failed or was cancelled: they can never run."""
        rows = self._db.execute(
            "SELECT j.id, d.state, d.error FROM jobs j JOIN jobs d ON d.id = j.after "
            "WHERE j.state = 'queued' AND d.state IN ('failed', 'cancelled')").fetchall()
        for job_id, dep_state, dep_error in rows:
            reason = ("the avatar's preparation was cancelled" if dep_state == "cancelled"
                      else f"the avatar could not be prepared: {dep_error or 'unknown error'}")
            self._db.execute("UPDATE jobs SET state = 'failed', stage = 'failed', error = ?, "
                             "finished = ? WHERE id = ? AND state = 'queued'",
                             (reason, time.time(), job_id))

    def mark_started(self, job_id: str, worker: str) -> bool:
        """A queued job taken by a remote worker (broker queue): now running there."""
        return self._exec("UPDATE jobs SET state = 'running', stage = 'starting', progress = 0, "
                          "started = ?, attempts = attempts + 1, worker = ? "
                          "WHERE id = ? AND state = 'queued'", (time.time(), worker, job_id)) > 0

    def runnable(self, limit: int = 500) -> list[dict[str, Any]]:
        """Queued jobs whose dependency is done (or gone), oldest first."""
        with self._lock:
            self._fail_orphans()
        return self._all("SELECT j.* FROM jobs j LEFT JOIN jobs d ON d.id = j.after "
                         "WHERE j.state = 'queued' AND (j.after IS NULL OR d.state = 'done' "
                         "OR d.id IS NULL) ORDER BY j.created, j.rowid LIMIT ?", (limit,))

    def running(self) -> list[dict[str, Any]]:
        return self._all("SELECT id, attempts, worker, started, cancel_requested FROM jobs "
                         "WHERE state = 'running'")

    def finished_jobs(self, before: float | None = None) -> list[dict[str, Any]]:
        """Ended jobs, the longest-finished first (``before``: finished before that time)."""
        marks = ",".join("?" * len(FINAL))
        sql = f"SELECT * FROM jobs WHERE state IN ({marks})"
        args: tuple = FINAL
        if before is not None:
            sql += " AND COALESCE(finished, created) < ?"
            args += (before,)
        return self._all(sql + " ORDER BY COALESCE(finished, created), rowid", args)

    def avatar_of_job(self, job_id: str) -> str | None:
        """The avatar whose preparation this job is, if any (its row must outlive retention)."""
        row = self._one("SELECT id FROM avatars WHERE job_id = ?", (job_id,))
        return row["id"] if row else None

    def delete_job(self, job_id: str) -> bool:
        """Forget an ended job (retention). Running and queued jobs are never deleted."""
        marks = ",".join("?" * len(FINAL))
        return self._exec(f"DELETE FROM jobs WHERE id = ? AND state IN ({marks})", (job_id, *FINAL)) > 0

    def integrity(self) -> str:
        """SQLite's own check of the database file: "ok" when intact."""
        with self._lock:
            return self._db.execute("PRAGMA integrity_check").fetchone()[0]

    def set_progress(self, job_id: str, stage: str, progress: float) -> None:
        self._exec("UPDATE jobs SET stage = ?, progress = ? WHERE id = ? AND state = 'running'",
                   (stage, max(0.0, min(1.0, float(progress))), job_id))

    def finish(self, job_id: str, state: str, *, error: str | None = None,
               result: dict | None = None) -> None:
        assert state in FINAL
        self._exec("UPDATE jobs SET state = ?, stage = ?, error = ?, result = ?, finished = ?, "
                   "progress = CASE WHEN ? = 'done' THEN 1.0 ELSE progress END "
                   "WHERE id = ? AND state = 'running'",
                   (state, state, error, json.dumps(result) if result is not None else None,
                    time.time(), state, job_id))

    def requeue(self, job_id: str, reason: str, *, count_attempt: bool = False) -> None:
        """Put a running job back in line (server shutting down, or recovering after a crash)."""
        self._exec("UPDATE jobs SET state = 'queued', stage = ?, progress = 0, started = NULL, "
                   "worker = NULL, attempts = attempts - ? WHERE id = ? AND state = 'running'",
                   (reason, 0 if count_attempt else 1, job_id))

    def request_cancel(self, job_id: str) -> dict[str, Any] | None:
        """Cancel a queued job at once; flag a running one for its worker. Returns the job."""
        now = time.time()
        with self._lock:
            self._db.execute("UPDATE jobs SET state = 'cancelled', stage = 'cancelled', finished = ? "
                             "WHERE id = ? AND state = 'queued'", (now, job_id))
            self._db.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ? AND state = 'running'",
                             (job_id,))
        return self.get_job(job_id)

    def cancel_requested(self, job_id: str) -> bool:
        row = self._one("SELECT cancel_requested, state FROM jobs WHERE id = ?", (job_id,))
        return row is None or row["cancel_requested"] or row["state"] != "running"

    def recover(self, max_attempts: int) -> tuple[int, int]:
        """After a crash: re-queue jobs left 'running', or fail those tried too often.

        Call only while no worker runs on this database (LocalQueue holds a lock file for that).
        Returns (re-queued, failed).
        """
        requeued = failed = 0
        for job in self._all("SELECT * FROM jobs WHERE state = 'running'"):
            if job["cancel_requested"]:
                self.finish(job["id"], "cancelled")
                failed += 1
            elif job["attempts"] >= max_attempts:
                self.finish(job["id"], "failed", error=(
                    f"the server stopped while this job was running, {job['attempts']} times; "
                    "giving up"))
                failed += 1
            else:
                self.requeue(job["id"], "re-queued after a server restart", count_attempt=True)
                requeued += 1
        return requeued, failed

    # -- avatars ------------------------------------------------------------------------------

    def add_avatar(self, avatar_id: str, name: str, source_kind: str, job_id: str) -> None:
        self._exec("INSERT INTO avatars (id, created, name, source_kind, job_id) VALUES (?, ?, ?, ?, ?)",
                   (avatar_id, time.time(), name, source_kind, job_id))

    _AVATAR_SQL = ("SELECT a.*, j.state AS job_state, j.stage AS job_stage, j.progress AS job_progress, "
                   "j.error AS job_error, j.result AS job_result FROM avatars a "
                   "LEFT JOIN jobs j ON j.id = a.job_id")

    def get_avatar(self, avatar_id: str) -> dict[str, Any] | None:
        row = self._one(self._AVATAR_SQL + " WHERE a.id = ?", (avatar_id,))
        return _avatar(row)

    def list_avatars(self, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        rows = self._all(self._AVATAR_SQL + " ORDER BY a.created DESC, a.rowid DESC LIMIT ? OFFSET ?",
                         (limit, offset))
        return [_avatar(r) for r in rows]

    def delete_avatar(self, avatar_id: str) -> bool:
        return self._exec("DELETE FROM avatars WHERE id = ?", (avatar_id,)) > 0

    def active_jobs_for_avatar(self, avatar_id: str) -> list[dict[str, Any]]:
        return self._all("SELECT * FROM jobs WHERE avatar_id = ? AND state IN ('queued', 'running')",
                         (avatar_id,))


def _avatar(row: dict[str, Any] | None) -> dict[str, Any] | None:
    """An avatar's state is its preparation job's state, so the two can never disagree."""
    if row is None:
        return None
    job_state = row.pop("job_state")
    state = {"done": "ready", "failed": "failed", "cancelled": "failed"}.get(job_state, "preparing")
    error = row.pop("job_error")
    if job_state == "cancelled":
        error = "preparation was cancelled"
    result = row.pop("job_result")
    row.update(state=state, stage=row.pop("job_stage") or "", progress=row.pop("job_progress") or 0.0,
               error=error, info=json.loads(result) if result else None)
    return row
