"""`lipdub serve`: HTTP API, browser page and persistent job queue.

Names are loaded lazily: job child processes import lipdub.server.jobs and should not pay for
FastAPI's import.
"""

from __future__ import annotations

__all__ = ["ServerConfig", "create_app", "serve"]


def __getattr__(name: str):
    if name == "ServerConfig":
        from lipdub.server.config import ServerConfig

        return ServerConfig
    if name in ("create_app", "serve"):
        from lipdub.server import app

        return getattr(app, name)
    raise AttributeError(name)
