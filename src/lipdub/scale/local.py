"""A throwaway Redis on 127.0.0.1 for tests, benchmarks and trying scale-out on one machine.

Runs Debian's (or any) ``redis-server`` binary with persistence off, on a free port, and stops it
on exit. Not for production: a real broker should keep its data (see the README).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from lipdub.errors import MissingDependencyError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalRedis:
    """``with LocalRedis() as r: r.url``; ``stop()`` / ``start()`` simulate an outage (the
    restarted server is empty, as a broker without persistence would be)."""

    def __init__(self, port: int | None = None, workdir: Path | None = None):
        self.exe = shutil.which("redis-server")
        if self.exe is None:
            raise MissingDependencyError("redis-server is not installed (Debian: apt-get install redis-server)")
        self.port = port or free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> "LocalRedis":
        cmd = [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--protected-mode", "yes", "--loglevel", "warning"]
        if self.workdir is not None:
            cmd += ["--dir", str(self.workdir)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                pass
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"redis-server exited at start: {err.strip()[-300:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("redis-server did not answer")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def __enter__(self) -> "LocalRedis":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
