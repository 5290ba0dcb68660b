"""Scale-out end to end: a server with --broker, real `lipdub worker` processes, a real Redis.

Redis is Debian's redis-server on a free 127.0.0.1 port without persistence (skipped when it is
not installed). Workers are subprocesses running the fake jobs below (module level, so their job
processes can import them), with a 2 s lease so dead workers are noticed quickly. Every job
appends "done <id>" to a log shared by all processes: the exactly-once check.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")
pytest.importorskip("celery")
pytest.importorskip("redis")

from lipdub.scale.local import LocalRedis  # noqa: E402
from lipdub.server import ServerConfig  # noqa: E402
from lipdub.jobstore.store import Store  # noqa: E402

if shutil.which("redis-server") is None:
    pytest.skip("redis-server is not installed (Debian: apt-get install redis-server)",
                allow_module_level=True)

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"
LEASE_TTL = 2.0
FINAL = ("done", "failed", "cancelled")

# ---------------------------------------------------------------------------------- fake jobs


def _log(line: str) -> None:
    with open(os.environ["LIPDUB_TEST_LOG"], "a") as f:  # O_APPEND: whole lines, any process
        f.write(line + "\n")


def quick_generate(ctx):
    """0.3 s of 'rendering' that needs the avatar's files; writes its id as the result."""
    avatar = ctx.path(ctx.inputs["avatar_dir"])
    assert next(avatar.glob("source.*")).stat().st_size > 0
    seconds = float(ctx.options.get("seconds", 0.3))
    steps = max(1, int(seconds / 0.05))
    for i in range(steps):
        ctx.progress("rendering", i / steps)
        time.sleep(seconds / steps)
    out = ctx.work_dir / "result.mp4"
    out.write_bytes(b"\0\0\0\x18ftypmp42" + ctx.job_id.encode())
    _log(f"done {ctx.job_id}")
    return {"output": str(out.relative_to(ctx.data_dir))}


def worker_killer(ctx):
    """Kills the whole worker it runs in (its process group), like an out-of-memory kill."""
    ctx.progress("misbehaving", 0.1)
    os.killpg(os.getpgid(os.getppid()), signal.SIGKILL)
    time.sleep(30)


def jobs():
    from test_server_api import fake_prepare

    return {"prepare": fake_prepare, "generate": quick_generate, "killer": worker_killer}

# ------------------------------------------------------------------------------------ cluster


class Cluster:
    def __init__(self, tmp: Path, redis: LocalRedis):
        self.tmp, self.redis = tmp, redis
        self.data = tmp / "data"
        self.log = tmp / "runs.log"
        self.log.touch()
        self.workers: dict[int, subprocess.Popen] = {}
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(SRC)]),
                    "LIPDUB_TEST_LOG": str(self.log), "LIPDUB_LEASE_TTL": str(LEASE_TTL),
                    "LIPDUB_HEARTBEAT": "0.4"}

    def start_worker(self, storage: Path | None = None) -> int:
        n = len(self.workers)
        code = ("import test_scale_cluster as t\n"
                "from lipdub.scale.worker import run_worker, WorkerConfig\n"
                f"run_worker(WorkerConfig(broker={self.redis.url!r}, storage={str(storage or self.data)!r}, "
                f"cache_dir={str(self.tmp / f'cache{n}')!r}), jobs=t.jobs())\n")
        # Own session: killing the process group takes the worker, its fork server and jobs.
        # Worker output goes to worker<n>.log in the test's tmp folder (kept by pytest).
        with open(self.tmp / f"worker{n}.log", "w") as out:
            proc = subprocess.Popen([sys.executable, "-c", code], env=self.env, cwd=str(TESTS),
                                    start_new_session=True, stdout=out, stderr=subprocess.STDOUT)
        self.workers[proc.pid] = proc
        import redis

        r, deadline = redis.Redis.from_url(self.redis.url), time.monotonic() + 30
        while not any(k.decode().endswith(f":{proc.pid}") for k in r.hkeys("lipdub:workers")):
            assert proc.poll() is None, "worker exited at start"
            assert time.monotonic() < deadline, "worker did not register"
            time.sleep(0.05)
        return proc.pid

    def kill_worker(self, pid: int) -> None:
        os.killpg(pid, signal.SIGKILL)
        self.workers[pid].wait(10)

    def stop(self) -> None:
        for pid, proc in self.workers.items():
            if proc.poll() is None:
                os.killpg(pid, signal.SIGKILL)
                proc.wait(10)

    def done_lines(self) -> list[str]:
        return [line.split()[1] for line in self.log.read_text().splitlines() if line.startswith("done")]


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    with LocalRedis(workdir=tmp_path_factory.mktemp("redis")) as r:
        yield r


@pytest.fixture
def cluster(tmp_path, redis_server, monkeypatch):
    import redis

    redis.Redis.from_url(redis_server.url).flushall()
    monkeypatch.setenv("LIPDUB_LEASE_TTL", str(LEASE_TTL))
    monkeypatch.setenv("LIPDUB_HEARTBEAT", "0.4")
    c = Cluster(tmp_path, redis_server)
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def server(cluster):
    from test_server_load import running_server

    from lipdub.scale.client import create_scaled_app

    config = ServerConfig(data_dir=cluster.data, log_level="warning")
    with running_server(create_scaled_app(config, cluster.redis.url, max_attempts=2)) as base:
        yield base


def make_avatar(base: str, clip: Path) -> str:
    r = httpx.post(f"{base}/avatars", files={"file": ("clip.mp4", clip.read_bytes())}, timeout=30)
    assert r.status_code == 202, r.text
    avatar = wait(base, f"/avatars/{r.json()['id']}", lambda a: a["state"] != "preparing")
    assert avatar["state"] == "ready", avatar
    return avatar["id"]


def wait(base: str, url: str, until, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = httpx.get(f"{base}{url}", timeout=10).json()
        if until(body):
            return body
        assert time.monotonic() < deadline, f"{url} stuck: {body}"
        time.sleep(0.1)


def submit(base: str, avatar_id: str, audio: bytes, n: int, options: str = "{}") -> list[str]:
    async def go():
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            async def one():
                r = await client.post("/jobs", data={"avatar_id": avatar_id, "options": options},
                                      files={"audio": ("a.wav", audio)})
                assert r.status_code == 202, r.text
                return r.json()["id"]
            return await asyncio.gather(*(one() for _ in range(n)))
    return asyncio.run(go())


def wait_all(base: str, ids: list[str], timeout: float = 60.0) -> list[dict]:
    return [wait(base, f"/jobs/{i}", lambda j: j["state"] in FINAL, timeout) for i in ids]

# -------------------------------------------------------------------------------------- tests


@pytest.fixture(autouse=True)
def _public_options(monkeypatch):
    # The fake job takes "seconds"; let the API accept it as a generate option in these tests.
    from lipdub.server import jobs as jobfns

    monkeypatch.setitem(jobfns.PUBLIC_GENERATE_OPTIONS, "seconds", (0.0, 30.0))
    monkeypatch.setattr(jobfns, "check_generate_options", lambda options: None)


def test_twenty_jobs_two_workers_each_once(cluster, server, talking_clip, speech_wav):
    workers = {cluster.start_worker(), cluster.start_worker()}
    avatar_id = make_avatar(server, talking_clip)
    t0 = time.perf_counter()
    ids = submit(server, avatar_id, speech_wav.read_bytes(), 20)
    jobs = wait_all(server, ids)
    wall = time.perf_counter() - t0
    assert [j["state"] for j in jobs] == ["done"] * 20, [j["error"] for j in jobs]
    assert sorted(cluster.done_lines()) == sorted(ids)  # each job ran to the end exactly once
    for j in jobs[:3]:
        assert httpx.get(f"{server}{j['result_url']}").content.endswith(j["id"].encode())
    store = Store(cluster.data / "lipdub.sqlite3")
    ran_on = {int(store.get_job(i)["worker"].rsplit(":", 1)[1]) for i in ids}
    assert ran_on == workers  # spread over both
    # each worker copied the avatar once, then used its cache
    for n in range(2):
        assert len(list((cluster.tmp / f"cache{n}" / "avatars").glob("*-*"))) == 1
    health = httpx.get(f"{server}/health").json()["queue"]
    assert health["backend"] == "celery" and health["workers"] == 2 and health["broker_ok"]
    print(f"\nscale: 20 jobs of 0.3 s on 2 workers in {wall:.1f} s")


def test_worker_killed_mid_job_the_other_one_finishes_it(cluster, server, talking_clip, speech_wav):
    first = cluster.start_worker()
    avatar_id = make_avatar(server, talking_clip)
    slow = submit(server, avatar_id, speech_wav.read_bytes(), 1, '{"seconds": 4}')[0]
    wait(server, f"/jobs/{slow}", lambda j: j["state"] == "running" and j["progress"] > 0.1)
    second = cluster.start_worker()
    others = submit(server, avatar_id, speech_wav.read_bytes(), 4)
    store = Store(cluster.data / "lipdub.sqlite3")
    assert store.get_job(slow)["worker"].endswith(f":{first}")
    cluster.kill_worker(first)  # the whole worker, mid-job: no shutdown code runs
    jobs = wait_all(server, [slow, *others])
    assert [j["state"] for j in jobs] == ["done"] * 5, [j["error"] for j in jobs]
    row = store.get_job(slow)
    assert row["worker"].endswith(f":{second}") and row["attempts"] == 2
    assert sorted(cluster.done_lines()) == sorted([slow, *others])  # nothing lost, nothing twice


def test_job_that_keeps_killing_workers_fails_with_the_reason(cluster):
    from lipdub.scale.client import BatchClient

    cluster.start_worker()
    cluster.start_worker()
    # also exercises the batch API on the same workers (its own store and event stream)
    with BatchClient(cluster.redis.url, cluster.data, max_attempts=2) as client:
        job = client.wait([client.submit("killer", {})], timeout=60)[0]
    assert job["state"] == "failed" and job["attempts"] == 2
    assert "its worker stopped while running it, 2 times" in job["error"]
    assert all(p.poll() is not None for p in cluster.workers.values())


def test_redis_outage_keeps_jobs_queued_then_all_complete(cluster, server, talking_clip, speech_wav):
    cluster.start_worker()
    avatar_id = make_avatar(server, talking_clip)
    audio = speech_wav.read_bytes()
    cluster.redis.stop()
    try:
        ids = submit(server, avatar_id, audio, 3)  # accepted and kept in the store
        health = wait(server, "/health", lambda h: not h["queue"]["broker_ok"], 10)["queue"]
        assert "broker unreachable" in health["broker_error"] and health["depth"] == 3
    finally:
        cluster.redis.start()  # empty: everything queued must be sent again
    jobs = wait_all(server, ids, timeout=90)
    assert [j["state"] for j in jobs] == ["done"] * 3, [j["error"] for j in jobs]
    assert sorted(cluster.done_lines()) == sorted(ids)


def test_worker_without_the_avatar_files_fails_the_job_clearly(cluster, server, talking_clip, speech_wav):
    good = cluster.start_worker()
    avatar_id = make_avatar(server, talking_clip)
    cluster.kill_worker(good)
    elsewhere = cluster.tmp / "not-the-shared-folder"
    elsewhere.mkdir()
    cluster.start_worker(storage=elsewhere)
    job = wait_all(server, submit(server, avatar_id, speech_wav.read_bytes(), 1))[0]
    assert job["state"] == "failed"
    assert f"this worker cannot read the avatar avatars/{avatar_id}" in job["error"], job["error"]
    assert "--storage" in job["error"]


def test_cancel_reaches_a_job_running_on_a_worker(cluster, server, talking_clip, speech_wav):
    cluster.start_worker()
    avatar_id = make_avatar(server, talking_clip)
    job_id = submit(server, avatar_id, speech_wav.read_bytes(), 1, '{"seconds": 20}')[0]
    wait(server, f"/jobs/{job_id}", lambda j: j["state"] == "running" and j["progress"] > 0)
    t0 = time.monotonic()
    assert httpx.delete(f"{server}/jobs/{job_id}").status_code == 202
    job = wait(server, f"/jobs/{job_id}", lambda j: j["state"] in FINAL, 10)
    assert job["state"] == "cancelled" and time.monotonic() - t0 < 5
    assert cluster.done_lines() == []
    # a job on an uploaded video: prepare, then generate, sent once the preparation is done
    files = {"video": ("v.mp4", talking_clip.read_bytes()), "audio": ("a.wav", speech_wav.read_bytes())}
    r = httpx.post(f"{server}/jobs", files=files, timeout=30)
    assert r.status_code == 202, r.text
    assert wait_all(server, [r.json()["id"]])[0]["state"] == "done"
    assert cluster.done_lines() == [r.json()["id"]]
