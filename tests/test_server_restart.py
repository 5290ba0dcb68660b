"""A job survives the server: kill the server mid-job, start it again, the job still ends.

The server runs as a real `serve()` subprocess with job processes; the fake job reports progress
for a few seconds and records its pid, so the test can also check that a job process never
outlives a killed server.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from lipdub.jobstore.store import Store  # noqa: E402

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"


def slow_generate(ctx):
    """About 3 s of 'rendering' with steady progress; writes the pid of the process it runs in."""
    (ctx.work_dir / "pid").write_text(str(os.getpid()))
    for i in range(60):
        ctx.progress("rendering", i / 60)
        time.sleep(0.05)
    out = ctx.work_dir / "result.mp4"
    out.write_bytes(b"\0\0\0\x18ftypmp42")  # not playable; this test only checks the queue
    return {"output": str(out.relative_to(ctx.data_dir))}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(data_dir: Path, port: int, grace: float = 0.0) -> subprocess.Popen:
    code = ("import test_server_api as api, test_server_restart as me\n"
            "from lipdub.server.app import serve\nfrom lipdub.server.config import ServerConfig\n"
            f"serve(ServerConfig(data_dir={str(data_dir)!r}, port={port}, workers=1, log_level='warning', "
            f"shutdown_grace={grace}),"
            " jobs={'prepare': api.fake_prepare, 'generate': me.slow_generate})\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(SRC)])}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=str(TESTS))
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, "server exited at start"
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.1)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def wait_job(base: str, job_id: str, until, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = httpx.get(f"{base}/jobs/{job_id}", timeout=5).json()
        if until(job):
            return job
        assert time.monotonic() < deadline, f"job stuck: {job}"
        time.sleep(0.1)


def test_job_survives_server_kill_and_stop(tmp_path, talking_clip, speech_wav):
    data, port = tmp_path / "data", free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_server(data, port)
    try:
        files = {"video": ("v.mp4", talking_clip.read_bytes()), "audio": ("a.wav", speech_wav.read_bytes())}
        job_id = httpx.post(f"{base}/jobs", files=files, timeout=30).json()["id"]
        wait_job(base, job_id, lambda j: j["state"] == "running" and j["progress"] > 0.1)
        pid = int((data / "jobs" / job_id / "pid").read_text())

        server.send_signal(signal.SIGKILL)  # a crash: no shutdown code runs
        server.wait(10)
        deadline = time.monotonic() + 5
        while alive(pid):  # the job process dies with its server (PR_SET_PDEATHSIG)
            assert time.monotonic() < deadline, "job process outlived the killed server"
            time.sleep(0.05)
        # the row still says running: nobody was left to update it
        assert Store(data / "lipdub.sqlite3").get_job(job_id)["state"] == "running"

        server = start_server(data, port)
        job = wait_job(base, job_id, lambda j: j["state"] == "running" and j["progress"] > 0.1)
        assert job["attempts"] == 2

        server.send_signal(signal.SIGTERM)  # an orderly stop without grace puts the job back, uncounted
        server.wait(20)
        stored = Store(data / "lipdub.sqlite3").get_job(job_id)
        assert stored["state"] == "queued" and stored["attempts"] == 1, stored

        server = start_server(data, port)
        job = wait_job(base, job_id, lambda j: j["state"] in ("done", "failed", "cancelled"))
        assert job["state"] == "done" and job["attempts"] == 2, job
        health = httpx.get(f"{base}/health").json()["queue"]
        assert health["running"] is True and health["jobs"]["running"] == 0
    finally:
        server.kill()
        server.wait(10)


def test_sigterm_lets_the_running_job_finish_then_exits(tmp_path, talking_clip, speech_wav):
    data, port = tmp_path / "data", free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_server(data, port, grace=20.0)
    try:
        files = {"video": ("v.mp4", talking_clip.read_bytes()), "audio": ("a.wav", speech_wav.read_bytes())}
        job_id = httpx.post(f"{base}/jobs", files=files, timeout=30).json()["id"]
        second = httpx.post(f"{base}/jobs", files=files, timeout=30).json()["id"]
        wait_job(base, job_id, lambda j: j["state"] == "running" and j["progress"] > 0.1)
        start = time.monotonic()
        server.send_signal(signal.SIGTERM)
        server.wait(30)  # the running job (about 3 s) finishes, then the server exits
        took = time.monotonic() - start
        store = Store(data / "lipdub.sqlite3")
        assert store.get_job(job_id)["state"] == "done", store.get_job(job_id)
        # queued work is not started during the drain, and nothing is lost
        assert store.get_job(second)["state"] == "queued"
        assert took < 15, took
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{base}/health", timeout=1)
    finally:
        server.kill()
        server.wait(10)


def test_job_interrupted_too_often_fails_with_a_reason(tmp_path):
    store = Store(tmp_path / "db.sqlite3")
    job = store.add_job("generate", {})
    for expected in ("queued", "failed"):
        claimed = store.claim("w")
        assert claimed["id"] == job["id"]  # ... and then the server dies
        assert store.recover(max_attempts=2) == ((1, 0) if expected == "queued" else (0, 1))
        assert store.get_job(job["id"])["state"] == expected
    assert "stopped while this job was running, 2 times" in store.get_job(job["id"])["error"]
    # a job whose cancel was requested before the crash ends cancelled, not re-run
    other = store.add_job("generate", {})
    store.claim("w")
    store.request_cancel(other["id"])
    store.recover(max_attempts=2)
    assert store.get_job(other["id"])["state"] == "cancelled"
