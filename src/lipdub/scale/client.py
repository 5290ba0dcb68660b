"""Entry points that put work on the broker: `lipdub serve --broker`, and batches.

``serve`` runs the usual HTTP server with a ``CeleryQueue`` in place of the in-process pool.
``BatchClient`` / ``submit_batch`` let `lipdub batch --broker` (or any script) send many jobs to
the same workers without an HTTP server: the client keeps its own small SQLite store inside the
shared storage and consumes its own event stream, so batches and servers share workers without
seeing each other's jobs.
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable

from lipdub.errors import InputError
from lipdub.jobstore.store import FINAL, Store
from lipdub.scale.dispatch import CeleryQueue

log = logging.getLogger("lipdub.scale")


def create_scaled_app(config, broker: str, *, max_attempts: int = 3):
    """The server's FastAPI app, with jobs sent to Celery workers through ``broker``."""
    from lipdub.server.app import create_app

    queue = CeleryQueue(Store(config.db_path), config.data_dir, broker, max_attempts=max_attempts)
    return create_app(config, queue=queue)


def serve(config, broker: str, *, max_attempts: int = 3) -> None:
    """`lipdub serve --broker URL`: like lipdub.server.serve, jobs run on `lipdub worker`s."""
    import uvicorn

    logging.basicConfig(level=getattr(logging, config.log_level.upper(), logging.INFO),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    app = create_scaled_app(config, broker, max_attempts=max_attempts)
    uvicorn.run(app, host=config.host, port=config.port, log_level=config.log_level,
                timeout_graceful_shutdown=5)


class BatchClient:
    """Send jobs to the workers and wait for them, with no server.

    ``storage_dir`` is the shared folder the workers mount as their ``--storage``; inputs are
    staged into it and results are read from it. Use as a context manager.
    """

    def __init__(self, broker: str, storage_dir: Path | str, *, max_attempts: int = 3,
                 batch_id: str | None = None):
        self.storage_dir = Path(storage_dir)
        self.batch_id = batch_id or uuid.uuid4().hex
        home = self.storage_dir / "batches" / self.batch_id
        self.store = Store(home / "jobs.sqlite3")
        self.queue = CeleryQueue(self.store, home, broker, max_attempts=max_attempts,
                                 owner=f"batch-{self.batch_id}")

    def __enter__(self) -> "BatchClient":
        self.queue.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.queue.stop()
        try:  # this batch's event stream is of no use to anyone once it is done
            self.queue.redis.delete(self.queue.stream)
        except self.queue._errors:
            pass
        self.store.close()

    def stage(self, path: Path | str) -> str:
        """Copy a local file or folder into the storage; returns its path there for ``inputs``."""
        path = Path(path)
        if not path.exists():
            raise InputError(f"{path} does not exist")
        rel = f"uploads/{uuid.uuid4().hex}{path.suffix}"
        dest = self.storage_dir / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if path.is_dir() else shutil.copy2)(path, dest)
        return rel

    def submit(self, kind: str, inputs: dict, options: dict | None = None, *,
               after: str | None = None) -> str:
        return self.queue.submit(kind, inputs, options or {}, after=after)["id"]

    def cancel(self, job_id: str) -> None:
        self.queue.cancel(job_id)

    def wait(self, job_ids: Iterable[str], timeout: float | None = None,
             on_update: Callable[[list[dict]], None] | None = None, poll: float = 0.2) -> list[dict]:
        """Block until every job has ended (or ``timeout`` s passed); returns the jobs in order."""
        ids = list(job_ids)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            jobs = [self.store.get_job(i) for i in ids]
            if on_update is not None:
                on_update(jobs)
            if all(j["state"] in FINAL for j in jobs):
                return jobs
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{sum(j['state'] not in FINAL for j in jobs)} job(s) not done "
                                   f"after {timeout:g} s")
            time.sleep(poll)

    def result_path(self, job: dict) -> Path | None:
        output = (job.get("result") or {}).get("output")
        return self.storage_dir / output if job["state"] == "done" and output else None


def submit_batch(items: Iterable[dict[str, Any]], broker: str, storage_dir: Path | str, *,
                 timeout: float | None = None, max_attempts: int = 3,
                 on_update: Callable[[list[dict]], None] | None = None) -> list[dict]:
    """Run ``items`` on the workers behind ``broker`` and wait for all of them.

    Each item is ``{"kind": "generate", "inputs": {...}, "options": {...}}`` with inputs given
    relative to ``storage_dir`` (use ``BatchClient.stage`` for local files), e.g. ``{"avatar_dir":
    "avatars/<id>", "audio": "uploads/x.wav"}``. Returns the final job records in item order;
    a done generate job's video is ``storage_dir / job["result"]["output"]``.
    """
    with BatchClient(broker, storage_dir, max_attempts=max_attempts) as client:
        ids = [client.submit(it.get("kind", "generate"), it["inputs"], it.get("options")) for it in items]
        return client.wait(ids, timeout=timeout, on_update=on_update)
