"""Scale-out throughput: a fixed batch of short jobs on 1 and on 2 worker processes.

Starts a throwaway redis-server on 127.0.0.1, then for each worker count starts that many
`lipdub worker` processes (one slot each), warms them up, sends JOBS jobs at once through the
batch API (BatchClient: the same CeleryQueue the server uses) and waits. Prints JSON: wall time,
jobs/s, queue wait (created -> started, from the store), run time per job and its overhead over
the job's own work, plus the dispatch latency of single jobs on idle workers. Two job kinds:
"cpu" (busy loop: bounded by this machine's cores, which workers on other machines would not
share) and "sleep" (no CPU: what the broker, storage and events cost, i.e. how adding machines
would scale).

    python benchmarks/scale_throughput.py [--jobs 24] [--work 0.25]

Every loop is bounded; the whole run takes about a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"


def spin(ctx):
    """Busy CPU for ctx.options['work'] seconds (a stand-in for rendering); with
    options['sleep'], sleeps instead (a job whose CPU is elsewhere: isolates the system's cost)."""
    work = float(ctx.options.get("work", 0.25))
    if ctx.options.get("sleep"):
        for i in range(5):
            ctx.progress("sleeping", i / 5)
            time.sleep(work / 5)
        return {"cpu_s": 0.0}
    end = time.process_time() + work
    while time.process_time() < end:
        sum(i * i for i in range(2000))
        ctx.progress("spinning", 1 - max(0.0, end - time.process_time()) / work)
    return {"cpu_s": work}


def quantiles(values: list[float]) -> dict:
    values = sorted(values)
    pick = lambda q: values[min(len(values) - 1, int(q * len(values)))]  # noqa: E731
    return {"p50": round(pick(0.5), 3), "p95": round(pick(0.95), 3), "max": round(values[-1], 3)}


def start_workers(n: int, url: str, tmp: Path) -> list[subprocess.Popen]:
    import redis

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(SRC)])}
    procs = []
    tmp.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        code = ("import scale_throughput as b\nfrom lipdub.scale.worker import run_worker, WorkerConfig\n"
                f"run_worker(WorkerConfig(broker={url!r}, storage={str(tmp / 'data')!r}, "
                f"cache_dir={str(tmp / f'cache{i}')!r}), jobs={{'spin': b.spin}})\n")
        log = open(tmp / f"worker{i}.log", "w")
        procs.append(subprocess.Popen([sys.executable, "-c", code], env=env, start_new_session=True,
                                      stdout=log, stderr=subprocess.STDOUT))
    r, deadline = redis.Redis.from_url(url), time.monotonic() + 60
    while len([k for k in r.hkeys("lipdub:workers")
               if int(k.decode().rsplit(":", 1)[1]) in {p.pid for p in procs}]) < n:
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            raise RuntimeError(f"workers did not start; see {tmp}/worker*.log")
        time.sleep(0.05)
    return procs


def stop_workers(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(5)


def run_batch(url: str, tmp: Path, n_workers: int, jobs: int, work: float, sleep: bool) -> dict:
    from lipdub.scale.client import BatchClient

    procs = start_workers(n_workers, url, tmp)
    try:
        with BatchClient(url, tmp / "data") as client:
            # warm-up: every worker starts its fork server and imports the job module
            client.wait([client.submit("spin", {}, {"work": 0.05}) for _ in range(2 * n_workers)], timeout=60)
            idle = []
            for _ in range(5):  # one job at a time on idle workers: pure dispatch latency
                job = client.wait([client.submit("spin", {}, {"work": 0.01})], timeout=30)[0]
                idle.append(job["started"] - job["created"])
            t0 = time.time()
            ids = [client.submit("spin", {}, {"work": work, "sleep": sleep}) for _ in range(jobs)]
            done = client.wait(ids, timeout=30 + 4 * jobs * work)
            wall = max(j["finished"] for j in done) - t0
    finally:
        stop_workers(procs)
    assert all(j["state"] == "done" for j in done), [j["error"] for j in done]
    run = [j["finished"] - j["started"] for j in done]
    return {"job": "sleep" if sleep else "cpu", "workers": n_workers, "wall_s": round(wall, 2), "jobs_per_s": round(jobs / wall, 2),
            "queue_wait_s": quantiles([j["started"] - j["created"] for j in done]),
            "run_s": quantiles(run), "overhead_per_job_s": round(statistics.median(run) - work, 3),
            "idle_dispatch_latency_s": quantiles(idle),
            "workers_used": len({j["worker"] for j in done})}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=24)
    ap.add_argument("--work", type=float, default=0.25, help="seconds of work per job")
    args = ap.parse_args()
    sys.path.insert(0, str(SRC))
    from lipdub.scale.local import LocalRedis

    with tempfile.TemporaryDirectory(prefix="lipdub-scale-") as d, LocalRedis(workdir=Path(d)) as redis_:
        runs = [run_batch(redis_.url, Path(d) / f"{kind}{n}", n, args.jobs, args.work, kind == "sleep")
                for kind in ("cpu", "sleep") for n in (1, 2)]
    ideal = args.jobs * args.work
    wall = {(r["job"], r["workers"]): r["wall_s"] for r in runs}
    out = {"benchmark": "scale_throughput", "python": platform.python_version(),
           "cpus": os.cpu_count(), "load_avg_1min": round(os.getloadavg()[0], 2),
           "jobs": args.jobs, "seconds_per_job": args.work, "ideal_serial_s": round(ideal, 2),
           "runs": runs,
           "speedup_2_vs_1": {k: round(wall[(k, 1)] / wall[(k, 2)], 2) for k in ("cpu", "sleep")}}
    json.dump(out, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
