"""Scale-out: jobs on many `lipdub worker`s on many machines, through Celery and Redis.

- ``client.serve`` / ``create_scaled_app``: `lipdub serve --broker URL` (the server keeps the
  SQLite store; workers report through Redis).
- ``worker.run_worker``: `lipdub worker --broker URL`.
- ``client.submit_batch`` / ``BatchClient``: batches on the same workers, without a server.
- ``storage``: the ``Storage`` interface (shared folder now, object stores later), avatar cache.

Names load lazily so `lipdub --help` never imports Celery.
"""

from __future__ import annotations

__all__ = ["BatchClient", "CeleryQueue", "SharedDirStorage", "Storage", "WorkerConfig",
           "create_scaled_app", "run_worker", "serve", "submit_batch"]

_WHERE = {"BatchClient": "client", "create_scaled_app": "client", "serve": "client",
          "submit_batch": "client", "CeleryQueue": "dispatch", "SharedDirStorage": "storage",
          "Storage": "storage", "WorkerConfig": "worker", "run_worker": "worker"}


def __getattr__(name: str):
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f"lipdub.scale.{_WHERE[name]}"), name)
    raise AttributeError(name)
