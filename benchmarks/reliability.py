"""Reliability: bad and odd inputs through the CLI and the API, load, crashes and a full disk.

Every input of the corpus (tests/bad_media.py: broken, lying, odd and damaged files, made on the
fly) goes through `lipdub prepare` / `lipdub generate` as a subprocess and through the HTTP API of
a real `lipdub serve`. Then: 20 jobs at once; kill -9 of the server mid-job and of a Celery worker
mid-job (when redis-server is installed); and a disk that fills up (a small tmpfs, when mounting
is permitted). Each outcome is classed as

- handled: a valid output (video with frames, audio, the audio's length within a frame), or a
  clear refusal (one `lipdub: error:` line and no output file; an HTTP 4xx/507 with a message; a
  failed job with a one-line reason);
- broken: exit 0 (or a done job) with a missing or invalid output;
- crashed: a traceback, a 500, a hang, or a non-zero exit without a clear message;
- lost: a job row that disappeared, or never ended.

    python benchmarks/reliability.py [--out benchmarks/results/reliability.json] [--skip-api]

About 10 minutes on 2 cores (most of it real generate runs on a tiny avatar).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "src")]

import bad_media  # noqa: E402
from lipdub.video import probe  # noqa: E402

ENV = {**os.environ, "LIPDUB_PROGRESS": "0", "OMP_NUM_THREADS": "1",
       "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT / "src")])}
LIPDUB = [sys.executable, "-m", "lipdub"]


# ------------------------------------------------------------------------------------ fixtures

def make_fixtures(work: Path) -> dict:
    from fixtures import astronaut, espeak, talking_frames, write_video
    import cv2
    import numpy as np

    work.mkdir(parents=True, exist_ok=True)
    speech = espeak("The quick brown fox jumps over the lazy dog, and then it sleeps.", work / "speech.wav")
    talking = write_video(work / "talking.mp4", talking_frames(50), fps=25, audio=speech)
    silent = write_video(work / "silent.mp4", talking_frames(25), fps=25)
    ramp = np.tile(np.linspace(0, 255, 256, dtype=np.uint8), (256, 1))
    no_face = write_video(work / "noface.mp4", [np.dstack([np.roll(ramp, 5 * i, 1)] * 3) for i in range(25)])
    png = work / "astronaut.png"
    cv2.imwrite(str(png), astronaut()[:, :, ::-1])
    from lipdub.avatar import Avatar, PrepareOptions, prepare
    from lipdub.render.train import TrainOptions, train_renderer

    avatar = work / "avatar"
    if not (avatar / "renderer.onnx").exists():
        prepare(talking, avatar, PrepareOptions(fps=25.0), overwrite=True)
        train_renderer(Avatar.load(avatar), TrainOptions(steps=3, size=32, batch_size=4, widths=(8, 16, 16)))
    return {"speech": speech, "talking": talking, "silent": silent, "no_face": no_face, "png": png,
            "avatar": avatar}


# ------------------------------------------------------------------------------------ judging

def valid_video(path: Path, audio_seconds: float | None) -> str | None:
    """Why ``path`` is not a valid dub (None when it is)."""
    if not path.is_file():
        return "no output file"
    try:
        info = probe(path)
    except Exception as exc:  # noqa: BLE001
        return f"unreadable: {exc}"
    if not info.has_video or info.n_frames < 1:
        return "no video frames"
    if not info.has_audio:
        return "no audio"
    if audio_seconds and abs(info.duration - audio_seconds) > 1 / 25 + 0.01:
        return f"{info.duration:.3f} s of video for {audio_seconds:.3f} s of audio"
    return None


def decoded_seconds(path: Path) -> float | None:
    """How long ``path``'s audio really is (ffmpeg decodes it; None if it cannot)."""
    try:
        from lipdub.audio import load_audio

        import contextlib
        import io

        with contextlib.redirect_stderr(io.StringIO()):
            return len(load_audio(path)) / 16000
    except Exception:  # noqa: BLE001
        return None


def judge_cli(proc: subprocess.CompletedProcess, output: Path | None, audio_seconds: float | None,
              want_video: bool = True) -> tuple[str, str]:
    err = proc.stderr.strip()
    if proc.returncode == 0:
        if output is None:
            return "handled", "ok"
        problem = valid_video(output, audio_seconds) if want_video else (
            None if (output / "manifest.json").is_file() else "no avatar manifest")
        return ("broken", problem) if problem else ("handled", "valid output")
    if "Traceback" in err:
        return "crashed", err.splitlines()[-1][:200]
    errors = [line for line in err.splitlines() if line.startswith("lipdub: error: ")]
    if not errors:
        return "crashed", f"exit {proc.returncode} without a clear message: {err[-200:]}"
    if output is not None and output.exists() and want_video:
        return "broken", "error, yet an output file was left"
    return "handled", errors[-1][len("lipdub: error: "):][:200]


def run(cmd: list, timeout: float = 300) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=ENV,
                              timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(cmd, -9, "", f"Traceback: timed out after {timeout} s {exc}")


# ------------------------------------------------------------------------------------ CLI

def cli_corpus(fx: dict, work: Path) -> list[dict]:
    rows = []
    out_dir = work / "cli out"
    out_dir.mkdir(parents=True, exist_ok=True)
    audio = bad_media.audio_cases(work / "audio", fx["speech"], fx["talking"], fx["silent"], fx["png"])
    for i, case in enumerate(audio):
        out = out_dir / f"{i:02d} ünï.mp4"
        proc = run(LIPDUB + ["generate", "--avatar", fx["avatar"], "--audio", case.path, "-o", out])
        outcome, detail = judge_cli(proc, out, decoded_seconds(case.path))
        rows.append({"via": "cli generate --audio", "case": case.name, "expect": case.expect,
                     "outcome": outcome, "got": "ok" if proc.returncode == 0 else "error", "detail": detail})
    for case in bad_media.avatar_cases(work / "avatars", fx["avatar"]):
        out = out_dir / f"avatar-{case.name}.mp4"
        proc = run(LIPDUB + ["generate", "--avatar", case.path, "--audio", fx["speech"], "-o", out])
        outcome, detail = judge_cli(proc, out, decoded_seconds(fx["speech"]))
        rows.append({"via": "cli generate --avatar", "case": case.name, "expect": case.expect,
                     "outcome": outcome, "got": "ok" if proc.returncode == 0 else "error", "detail": detail})
    for case in bad_media.visual_cases(work / "visual", fx["talking"], fx["png"], fx["speech"], fx["no_face"]):
        out = work / "prepared" / case.name
        proc = run(LIPDUB + ["prepare", case.path, "-o", out, "--overwrite", "--idle-seconds", "2"])
        outcome, detail = judge_cli(proc, out, None, want_video=False)
        rows.append({"via": "cli prepare", "case": case.name, "expect": case.expect,
                     "outcome": outcome, "got": "ok" if proc.returncode == 0 else "error", "detail": detail})
    rows += output_cases(fx, work)
    return rows


def output_cases(fx: dict, work: Path) -> list[dict]:
    """Where the video goes: read-only, a directory, a missing parent, odd names, a full disk."""
    rows = []
    seconds = decoded_seconds(fx["speech"])

    def attempt(name: str, out: Path, expect: str) -> None:
        proc = run(LIPDUB + ["generate", "--avatar", fx["avatar"], "--audio", fx["speech"], "-o", out])
        outcome, detail = judge_cli(proc, out if expect == "ok" else None, seconds)
        if expect == "error" and proc.returncode != 0 and any(
                p.name.endswith(".partial.mp4") for p in out.parent.glob("*") if out.parent.is_dir()):
            outcome, detail = "broken", "a partial file was left"
        rows.append({"via": "cli generate -o", "case": name, "expect": expect, "outcome": outcome,
                     "got": "ok" if proc.returncode == 0 else "error", "detail": detail})

    folder = work / "an output folder"
    folder.mkdir(exist_ok=True)
    attempt("output is a directory", folder, "error")
    attempt("output in a new folder", work / "new" / "déjà vu" / "out put.mp4", "ok")
    blocker = work / "a_file"
    blocker.write_text("x")
    attempt("parent is a file", blocker / "out.mp4", "error")
    with small_mount(work / "ro", "ro") as ro:
        if ro is not None:
            attempt("read-only folder", ro / "out.mp4", "error")
    with small_mount(work / "full", "size=300k") as full:
        if full is not None:
            attempt("full disk", full / "out.mp4", "error")
    return rows


class small_mount:
    """A tmpfs mounted for a test (read-only, or tiny); None where mounting is not permitted."""

    def __init__(self, path: Path, options: str):
        self.path, self.options, self.mounted = path, options, False

    def __enter__(self):
        self.path.mkdir(parents=True, exist_ok=True)
        ok = subprocess.run(["mount", "-t", "tmpfs", "-o", self.options, "tmpfs", str(self.path)],
                            capture_output=True).returncode == 0
        self.mounted = ok
        return self.path if ok else None

    def __exit__(self, *exc):
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True)


# ------------------------------------------------------------------------------------ API

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`lipdub serve` in a subprocess on its own port and data dir."""

    def __init__(self, data: Path, *extra: str, broker: str | None = None, env: dict | None = None):
        self.data, self.port = data, free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.args = ["serve", "--port", str(self.port), "--data-dir", str(data), "--train-minutes", "0.05",
                     *extra] + (["--broker", broker] if broker else [])
        self.env = {**ENV, **(env or {})}
        self.proc = None

    def start(self, timeout: float = 60) -> "Server":
        import httpx

        self.proc = subprocess.Popen(LIPDUB + self.args, env=self.env, stdout=subprocess.DEVNULL,
                                     stderr=open(self.data.parent / f"server-{self.port}.log", "ab"))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited at start ({self.proc.returncode})")
            time.sleep(0.2)
        raise RuntimeError("server did not start")

    def stop(self, sig=signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def answers(self) -> bool:
        import httpx

        try:
            return httpx.get(f"{self.base}/health", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False


def register_avatar(data: Path, avatar: Path) -> str:
    """Put a prepared, trained avatar into a (stopped) server's data dir; returns its id."""
    from lipdub.jobstore.store import Store, new_id

    avatar_id = new_id()
    shutil.copytree(avatar, data / "avatars" / avatar_id)
    store = Store(data / "lipdub.sqlite3")
    job = store.add_job("prepare", {"inputs": {"avatar_dir": f"avatars/{avatar_id}"}, "options": {}},
                        avatar_id=avatar_id)
    store.claim("setup")
    store.finish(job["id"], "done", result={"frames": 50, "trained": True})
    store.add_avatar(avatar_id, "fixture", "video", job["id"])
    store.close()
    return avatar_id


def wait_job(base: str, job_id: str, timeout: float = 300) -> dict | None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            r = httpx.get(f"{base}/jobs/{job_id}", timeout=10)
        except httpx.HTTPError:
            time.sleep(0.5)
            continue
        if r.status_code == 404:
            return None
        job = r.json()
        if job["state"] in ("done", "failed", "cancelled"):
            return job
        time.sleep(0.3)
    return {"state": "stuck"}


def judge_job(base: str, job: dict | None, audio_seconds: float | None, work: Path) -> tuple[str, str]:
    import httpx

    if job is None:
        return "lost", "the job row disappeared"
    if job["state"] == "stuck":
        return "lost", "the job never ended"
    if job["state"] == "failed":
        error = job.get("error") or ""
        if not error or "internal error" in error or "\n" in error:
            return "crashed", error[:200] or "failed without a reason"
        return "handled", error[:200]
    if job["state"] != "done":
        return "crashed", job["state"]
    out = work / f"result-{job['id'][:8]}.mp4"
    out.write_bytes(httpx.get(f"{base}/jobs/{job['id']}/result", timeout=60).content)
    problem = valid_video(out, audio_seconds)
    out.unlink(missing_ok=True)
    return ("broken", problem) if problem else ("handled", "valid output")


def judge_response(r) -> tuple[str, str]:
    try:
        detail = r.json().get("detail")
    except ValueError:
        detail = None
    if r.status_code >= 500 and r.status_code != 507:
        return "crashed", f"HTTP {r.status_code}"
    if not detail:
        return "crashed", f"HTTP {r.status_code} without a message"
    return "handled", f"HTTP {r.status_code}: {str(detail)[:160]}"


def api_corpus(fx: dict, work: Path) -> list[dict]:
    import httpx

    rows = []
    data = work / "api-data"
    avatar_id = register_avatar(data, fx["avatar"])
    server = Server(data, "--workers", "1").start()
    try:
        audio = bad_media.audio_cases(work / "audio", fx["speech"], fx["talking"], fx["silent"], fx["png"])
        pending = []
        for case in audio:
            if not case.path.is_file():
                continue  # a folder or a missing file: a client has nothing to upload
            r = httpx.post(f"{server.base}/jobs", data={"avatar_id": avatar_id},
                           files={"audio": (case.path.name, case.path.read_bytes())}, timeout=60)
            if r.status_code == 202:
                pending.append((case, r.json()["id"]))
            else:
                outcome, detail = judge_response(r)
                rows.append({"via": "api POST /jobs audio", "case": case.name, "expect": case.expect,
                             "outcome": outcome, "got": "error", "detail": detail})
        for case, job_id in pending:
            job = wait_job(server.base, job_id)
            outcome, detail = judge_job(server.base, job, decoded_seconds(case.path), work)
            rows.append({"via": "api POST /jobs audio", "case": case.name, "expect": case.expect,
                         "outcome": outcome, "got": "ok" if job and job["state"] == "done" else "error",
                         "detail": detail})
        for case in bad_media.visual_cases(work / "visual", fx["talking"], fx["png"], fx["speech"], fx["no_face"]):
            if not case.path.is_file():
                continue
            r = httpx.post(f"{server.base}/avatars", files={"file": (case.path.name, case.path.read_bytes())},
                           timeout=120)
            if r.status_code != 202:
                outcome, detail = judge_response(r)
                got = "error"
            else:
                job = wait_job(server.base, r.json()["job_id"], timeout=600)
                outcome, detail = judge_job_state(job)
                got = "ok" if job and job["state"] == "done" else "error"
            rows.append({"via": "api POST /avatars", "case": case.name, "expect": case.expect,
                         "outcome": outcome, "got": got, "detail": detail})
        for name, kwargs in (("options not JSON", {"data": {"avatar_id": avatar_id, "options": "{oops"}}),
                             ("unknown option", {"data": {"avatar_id": avatar_id, "options": '{"template": "/etc"}'}}),
                             ("option out of range", {"data": {"avatar_id": avatar_id, "options": '{"crf": 99}'}}),
                             ("no such avatar", {"data": {"avatar_id": "0" * 32}}),
                             ("bad avatar id", {"data": {"avatar_id": "../../etc"}})):
            r = httpx.post(f"{server.base}/jobs", files={"audio": ("a.wav", fx["speech"].read_bytes())},
                           timeout=30, **kwargs)
            outcome, detail = judge_response(r) if r.status_code != 202 else ("broken", "accepted")
            rows.append({"via": "api POST /jobs", "case": name, "expect": "error", "outcome": outcome,
                         "got": "error" if r.status_code != 202 else "ok", "detail": detail})
    finally:
        server.stop()
    return rows


def judge_job_state(job: dict | None) -> tuple[str, str]:
    if job is None:
        return "lost", "the job row disappeared"
    if job["state"] == "stuck":
        return "lost", "never ended"
    if job["state"] == "failed":
        error = job.get("error") or ""
        return ("crashed", error[:200]) if (not error or "internal error" in error) else ("handled", error[:200])
    return ("handled", job["state"]) if job["state"] == "done" else ("crashed", job["state"])


# ------------------------------------------------------------------------------------ load and crashes

def db_rows(data: Path) -> set[str]:
    with sqlite3.connect(data / "lipdub.sqlite3") as db:
        return {r[0] for r in db.execute("SELECT id FROM jobs")}


def integrity(data: Path) -> str:
    with sqlite3.connect(data / "lipdub.sqlite3") as db:
        return db.execute("PRAGMA integrity_check").fetchone()[0]


def concurrent_and_kill(fx: dict, work: Path, n_jobs: int = 20) -> dict:
    """20 jobs at once; kill -9 the server while they run; restart; every job must end well."""
    import httpx

    data = work / "load-data"
    avatar_id = register_avatar(data, fx["avatar"])
    server = Server(data, "--workers", "2").start()
    seconds = decoded_seconds(fx["speech"])
    ids = []
    for _ in range(n_jobs):
        r = httpx.post(f"{server.base}/jobs", data={"avatar_id": avatar_id},
                       files={"audio": ("a.wav", fx["speech"].read_bytes())}, timeout=60)
        ids.append(r.json()["id"] if r.status_code == 202 else None)
    accepted = [i for i in ids if i]
    # let a few finish and a few run, then crash the server
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        states = [httpx.get(f"{server.base}/jobs/{i}", timeout=10).json()["state"] for i in accepted]
        if states.count("done") >= 3 and "running" in states:
            break
        time.sleep(0.5)
    at_kill = {state: states.count(state) for state in set(states)}
    server.stop(signal.SIGKILL)
    rows_after_kill = db_rows(data)
    server = Server(data, "--workers", "2").start()
    outcomes = {"handled": 0, "broken": 0, "crashed": 0, "lost": 0}
    answered = True
    for job_id in accepted:
        job = wait_job(server.base, job_id, timeout=600)
        answered &= server.answers()
        outcome, _ = judge_job(server.base, job, seconds, work)
        outcomes[outcome] += 1
    server.stop()
    return {"jobs": n_jobs, "accepted": len(accepted), "states_at_kill": at_kill, **outcomes,
            "rows_lost_by_kill": len(set(accepted) - rows_after_kill),
            "server_answered_after_restart": answered, "sqlite_integrity": integrity(data)}


def worker_kill(fx: dict, work: Path) -> dict:
    """A Celery worker killed -9 mid-job: its job runs again on another worker."""
    if shutil.which("redis-server") is None:
        return {"skipped": "redis-server is not installed"}
    import httpx

    from lipdub.scale.local import LocalRedis

    env = {"LIPDUB_LEASE_TTL": "3", "LIPDUB_HEARTBEAT": "0.5"}
    with LocalRedis() as redis:
        data = work / "scale-data"
        avatar_id = register_avatar(data, fx["avatar"])
        server = Server(data, broker=redis.url, env=env).start()

        def worker(name: str) -> subprocess.Popen:
            return subprocess.Popen(LIPDUB + ["worker", "--broker", redis.url, "--storage", str(data),
                                              "--cache-dir", str(work / name)],
                                    env={**ENV, **env}, stdout=subprocess.DEVNULL,
                                    stderr=open(work / f"{name}.log", "ab"), start_new_session=True)

        first = worker("worker-a")
        try:
            r = httpx.post(f"{server.base}/jobs", data={"avatar_id": avatar_id},
                           files={"audio": ("a.wav", fx["speech"].read_bytes())}, timeout=60)
            job_id = r.json()["id"]
            deadline = time.monotonic() + 120
            while httpx.get(f"{server.base}/jobs/{job_id}", timeout=10).json()["state"] != "running":
                if time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            os.killpg(first.pid, signal.SIGKILL)  # the worker and its job process
            first.wait(10)
            second = worker("worker-b")
            job = wait_job(server.base, job_id, timeout=300)
            outcome, detail = judge_job(server.base, job, decoded_seconds(fx["speech"]), work)
            answered = server.answers()
            os.killpg(second.pid, signal.SIGTERM)
            second.wait(30)
        finally:
            if first.poll() is None:
                os.killpg(first.pid, signal.SIGKILL)
            server.stop()
        return {"outcome": outcome, "detail": detail, "attempts": (job or {}).get("attempts"),
                "server_answered": answered, "sqlite_integrity": integrity(data)}


def disk_full(fx: dict, work: Path) -> dict:
    """The server's data dir on a 48 MB tmpfs that fills up while jobs run."""
    import httpx

    mount = work / "tiny-disk"
    with small_mount(mount, "size=48m") as root:
        if root is None:
            return {"skipped": "mounting a tmpfs is not permitted here"}
        data = root / "data"
        avatar_id = register_avatar(data, fx["avatar"])
        server = Server(data, "--min-free-mb", "1").start()
        outcomes = {"handled": 0, "broken": 0, "crashed": 0, "lost": 0}
        statuses: dict[str, int] = {}
        answered = True
        try:
            ids = []
            filler = root / "filler"
            with open(filler, "wb") as f:  # leave ~1.5 MB: enough to accept, not to finish
                free = shutil.disk_usage(root).free
                f.write(b"\0" * max(0, free - 1_500_000))
            for _ in range(6):
                try:
                    r = httpx.post(f"{server.base}/jobs", data={"avatar_id": avatar_id},
                                   files={"audio": ("a.wav", fx["speech"].read_bytes())}, timeout=60)
                except httpx.HTTPError as exc:
                    statuses["no answer"] = statuses.get("no answer", 0) + 1
                    answered = False
                    continue
                statuses[str(r.status_code)] = statuses.get(str(r.status_code), 0) + 1
                if r.status_code == 202:
                    ids.append(r.json()["id"])
                else:
                    outcome, _ = judge_response(r)
                    outcomes[outcome] += 1
                answered &= server.answers()
            details = []
            for job_id in ids:
                job = wait_job(server.base, job_id, timeout=300)
                answered &= server.answers()
                outcome, detail = judge_job(server.base, job, decoded_seconds(fx["speech"]), work)
                outcomes[outcome] += 1
                details.append(f"{(job or {}).get('state')}: {detail}")
            health = httpx.get(f"{server.base}/health", timeout=10).json()
            filler.unlink()
            r = httpx.post(f"{server.base}/jobs", data={"avatar_id": avatar_id},
                           files={"audio": ("a.wav", fx["speech"].read_bytes())}, timeout=60)
            after = judge_job(server.base, wait_job(server.base, r.json()["id"]), decoded_seconds(fx["speech"]),
                              work) if r.status_code == 202 else ("crashed", f"HTTP {r.status_code}")
        finally:
            server.stop()
        return {**outcomes, "responses": statuses, "accepted_jobs": details, "server_answered": answered,
                "health_disk": health.get("disk"), "sqlite_integrity": integrity(data),
                "rows_kept": len(ids) - len(set(ids) - db_rows(data)), "accepted": len(ids),
                "after_space_freed": after[0]}


# ------------------------------------------------------------------------------------ main

def tally(rows: list[dict]) -> dict:
    out = {"inputs": len(rows)}
    for key in ("handled", "broken", "crashed", "lost"):
        out[key] = sum(r["outcome"] == key for r in rows)
    out["not_as_expected"] = [f"{r['via']}: {r['case']} (expected {r['expect']}, got {r['got']}: {r['detail']})"
                              for r in rows if r["got"] != r["expect"]]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(HERE / "results" / "reliability.json"))
    parser.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--skip-api", action="store_true", help="the CLI corpus only")
    args = parser.parse_args()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="lipdub-reliability-"))
    start = time.time()
    fx = make_fixtures(work / "fixtures")
    rows = cli_corpus(fx, work / "cli")
    report = {"command": "python benchmarks/reliability.py" + (" --skip-api" if args.skip_api else ""),
              "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
              "cli": tally(rows)}
    if not args.skip_api:
        api_rows = api_corpus(fx, work / "api")
        rows += api_rows
        report["api"] = tally(api_rows)
        report["concurrent_20_and_server_kill9"] = concurrent_and_kill(fx, work / "load")
        report["worker_kill9"] = worker_kill(fx, work / "scale")
        report["disk_full"] = disk_full(fx, work / "disk")
    report["all_inputs"] = tally(rows)
    report["rows"] = rows
    report["seconds"] = round(time.time() - start, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    summary = {k: v for k, v in report.items() if k != "rows"}
    print(json.dumps(summary, indent=2))
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
