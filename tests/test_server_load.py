"""20 jobs submitted at once over real HTTP: all finish, none lost, never more than N at a time.

Jobs run in job processes (the production setting) with a short fake job. The figures (submit
latency, wall time, observed concurrency) are printed; run with `-s` to see them.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

import pytest

httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")

from lipdub.server import ServerConfig, create_app  # noqa: E402

N_JOBS = 20
WORKERS = 3


def short_generate(ctx):
    """0.3 s of 'work' with progress, then a tiny result file."""
    for i in range(6):
        ctx.progress("rendering", i / 6)
        time.sleep(0.05)
    out = ctx.work_dir / "result.mp4"
    out.write_bytes(b"\0\0\0\x18ftypmp42" + ctx.job_id.encode())
    return {"output": str(out.relative_to(ctx.data_dir))}


@contextlib.contextmanager
def running_server(app):
    """Serve `app` with uvicorn on a free 127.0.0.1 port in a thread; yields the base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def max_overlap(jobs: list[dict]) -> int:
    events = sorted([(j["started"], 1) for j in jobs] + [(j["finished"], -1) for j in jobs])
    now = peak = 0
    for _, step in events:
        now += step
        peak = max(peak, now)
    return peak


def test_twenty_jobs_at_once(tmp_path, talking_clip, speech_wav):
    from test_server_api import fake_prepare

    config = ServerConfig(data_dir=tmp_path / "data", workers=WORKERS, isolation="process")
    app = create_app(config, jobs={"prepare": fake_prepare, "generate": short_generate})
    video, audio = talking_clip.read_bytes(), speech_wav.read_bytes()
    with running_server(app) as base:
        r = httpx.post(f"{base}/avatars", files={"file": ("clip.mp4", video)}, timeout=30)
        avatar_id = r.json()["id"]

        async def submit_all():
            async with httpx.AsyncClient(base_url=base, timeout=60) as client:
                async def one():
                    t0 = time.perf_counter()
                    r = await client.post("/jobs", data={"avatar_id": avatar_id},
                                          files={"audio": ("a.wav", audio)})
                    assert r.status_code == 202, r.text
                    return r.json()["id"], time.perf_counter() - t0
                return await asyncio.gather(*(one() for _ in range(N_JOBS)))

        t0 = time.perf_counter()
        submitted = asyncio.run(submit_all())
        submit_s = time.perf_counter() - t0
        ids = {job_id for job_id, _ in submitted}
        assert len(ids) == N_JOBS

        busy_seen = 0
        deadline = time.monotonic() + 90
        while True:
            queue = httpx.get(f"{base}/health").json()["queue"]
            busy_seen = max(busy_seen, queue["busy"])
            jobs = [j for j in httpx.get(f"{base}/jobs", params={"kind": "generate"}).json()]
            if all(j["state"] in ("done", "failed", "cancelled") for j in jobs) and len(jobs) == N_JOBS:
                break
            assert time.monotonic() < deadline, f"jobs stuck: {[j['state'] for j in jobs]}"
            time.sleep(0.1)
        wall_s = time.perf_counter() - t0

        assert {j["id"] for j in jobs} == ids  # none lost, none invented
        assert all(j["state"] == "done" for j in jobs), [j["error"] for j in jobs]
        for j in jobs[:3]:
            assert httpx.get(f"{base}{j['result_url']}").content.endswith(j["id"].encode())
        from lipdub.jobstore.store import Store

        rows = [Store(config.db_path).get_job(j) for j in ids]
        peak = max_overlap(rows)
        assert peak <= WORKERS and busy_seen <= WORKERS
        latencies = sorted(s for _, s in submitted)
        print(f"\nload: {N_JOBS} jobs, {WORKERS} workers (job processes): submitted in {submit_s:.2f} s "
              f"(p50 {latencies[N_JOBS // 2]:.2f} s, max {latencies[-1]:.2f} s), all done in "
              f"{wall_s:.1f} s; max concurrency {peak} (health 'busy' peak {busy_seen})")
