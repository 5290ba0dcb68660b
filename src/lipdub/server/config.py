"""Settings of `lipdub serve`: one frozen dataclass, built by the CLI or by tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

MB = 1024 * 1024


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    #: Holds the SQLite job table, uploads, avatars and results; survives restarts.
    data_dir: Path = field(default_factory=lambda: Path("lipdub-data"))
    #: Jobs that run at the same time. Each one is CPU-heavy, so more than the core count only
    #: makes every job slower.
    workers: int = 1
    #: When set, every route but /health and the page needs `X-API-Key` or `Authorization: Bearer`.
    api_key: str | None = None
    #: Upper bound on one request body (all files of an upload together); 413 past it.
    max_upload_bytes: int = 500 * MB
    max_audio_seconds: float = 600.0
    max_video_seconds: float = 600.0
    #: "process": each job runs in a child process (cancel terminates it; the server stays
    #: responsive). "thread": jobs run in the worker threads and stop at their next progress
    #: report; only for tests and debugging.
    isolation: str = "process"
    #: A job interrupted this many times by a server crash is failed instead of re-queued, so a
    #: job that kills the server cannot crash it forever.
    max_attempts: int = 2
    #: Seconds a cancelled child process gets to exit on SIGTERM before SIGKILL.
    cancel_grace: float = 2.0
    #: After preparing an avatar, also train its optional U-Net refinement (when
    #: lipdub.render.train exists). Off by default: an avatar is ready as soon as it is prepared.
    train_on_prepare: bool = False
    #: Wall-clock budget of that training (None: the trainer's default).
    train_minutes: float | None = None
    #: Uvicorn log level for serve().
    log_level: str = "info"
    #: Retention: jobs that ended this many days ago lose their result, uploads and row
    #: (None: kept until deleted). Avatars stay until deleted.
    keep_days: float | None = None
    #: Cap on the data folder's size: past it the longest-finished jobs are removed first
    #: (never a queued or running one). None: no cap.
    max_data_bytes: int | None = None
    #: Below this much free disk, uploads are refused with 507 (the database and running jobs
    #: keep the rest).
    min_free_bytes: int = 64 * MB
    #: Seconds between two housekeeping sweeps.
    sweep_interval: float = 600.0
    #: On SIGTERM, running jobs get this long to finish before they are re-queued.
    shutdown_grace: float = 10.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir))
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        if self.isolation not in ("process", "thread"):
            raise ValueError("isolation must be 'process' or 'thread'")
        if self.max_upload_bytes < 1:
            raise ValueError("max_upload_bytes must be positive")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.keep_days is not None and not self.keep_days > 0:
            raise ValueError("keep_days must be positive")
        if self.max_data_bytes is not None and self.max_data_bytes < 1:
            raise ValueError("max_data_bytes must be positive")
        if self.min_free_bytes < 0 or self.shutdown_grace < 0 or not self.sweep_interval > 0:
            raise ValueError("min_free_bytes and shutdown_grace must be >= 0, sweep_interval > 0")

    @property
    def db_path(self) -> Path:
        return self.data_dir / "lipdub.sqlite3"
