"""The HTTP API and page of `lipdub serve` (FastAPI; OpenAPI at /docs).

Routes only read and write the Store and hand work to a JobQueue; nothing here assumes the jobs
run in this process. Results are reachable only through their job's id.
"""

from __future__ import annotations

import hmac
import json
import logging
import platform
import sqlite3
import time
from contextlib import asynccontextmanager
from importlib.util import find_spec
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, File, Form, HTTPException, Path as PathParam, Query, UploadFile
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import APIKeyHeader, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Route

from lipdub import __version__
from lipdub.server import jobs as jobfns
from lipdub.server.config import ServerConfig
from lipdub.server.models import Accepted, Avatar, Deleted, Job, job_out
from lipdub.server.queue import JobFn, JobQueue, LocalQueue
from lipdub.jobstore.housekeeping import Janitor, disk_free, is_disk_full
from lipdub.jobstore.store import FINAL, Store, new_id
from lipdub.server.uploads import BodyLimitMiddleware, DiskFull, display_name, remove_tree, save_upload

log = logging.getLogger("lipdub.server")
STATIC = Path(__file__).parent / "static"
ID = Annotated[str, PathParam(pattern="^[0-9a-f]{32}$", description="id given when it was created")]
OPEN_PATHS = ("/", "/health", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json",
              "/favicon.ico")


class ApiKeyMiddleware:
    """Check the key before the app reads any of the body, so strangers cannot fill the disk."""

    def __init__(self, app, key: str):
        self.app = app
        self.key = key.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or scope["method"] == "OPTIONS":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-api-key", b"")
        auth = headers.get(b"authorization", b"")
        if not given and auth[:7].lower() == b"bearer ":
            given = auth[7:].strip()
        if given and hmac.compare_digest(given, self.key):
            return await self.app(scope, receive, send)
        body = json.dumps({"detail": "missing or wrong API key: send X-API-Key or "
                                     "Authorization: Bearer"}).encode()
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"),
                                (b"www-authenticate", b"Bearer"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


# Declared for the OpenAPI page only (the "Authorize" button); ApiKeyMiddleware enforces the key.
_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)
_bearer = HTTPBearer(auto_error=False)


def _documented_auth(_k: str | None = Depends(_key_header), _b=Depends(_bearer)) -> None:
    return None


def create_app(config: ServerConfig, *, jobs: dict[str, JobFn] | None = None,
               queue: JobQueue | None = None) -> FastAPI:
    """The app for `config`. ``jobs`` replaces the job functions (tests); ``queue`` the queue."""
    data_dir = config.data_dir
    store = Store(config.db_path)
    if queue is None:
        queue = LocalQueue(store, data_dir, jobs or jobfns.default_jobs(), workers=config.workers,
                           isolation=config.isolation, max_attempts=config.max_attempts,
                           cancel_grace=config.cancel_grace, shutdown_grace=config.shutdown_grace)
    janitor = Janitor(store, data_dir, keep_days=config.keep_days, max_bytes=config.max_data_bytes,
                      interval=config.sweep_interval)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        queue.start()
        janitor.start()
        try:
            yield
        finally:
            # SIGTERM lands here (uvicorn): no new job is taken, running ones get
            # shutdown_grace seconds to end, the rest go back to the queue.
            janitor.stop()
            await run_in_threadpool(queue.stop)

    app = FastAPI(title="lipdub", version=__version__, lifespan=lifespan,
                  description="Lip-sync dubbing: prepare avatars from footage or a photo, then "
                              "make them say any speech audio. Long work runs as jobs; poll "
                              "`GET /jobs/{id}` and fetch `GET /jobs/{id}/result`.")
    app.state.config, app.state.store, app.state.queue = config, store, queue
    app.state.janitor = janitor
    if config.api_key:
        app.add_middleware(ApiKeyMiddleware, key=config.api_key)
    # Added last = outermost: oversize bodies are refused before anything else reads them.
    app.add_middleware(BodyLimitMiddleware, limit=config.max_upload_bytes)
    # With a key, routes declare it (the /docs "Authorize" button) and their 401.
    api = APIRouter(dependencies=[Depends(_documented_auth)] if config.api_key else [],
                    responses={401: {"description": "missing or wrong API key"}} if config.api_key else {})

    async def save(upload: UploadFile, want: str):
        try:
            return await run_in_threadpool(
                save_upload, upload, data_dir, want, limit=config.max_upload_bytes,
                max_video_seconds=config.max_video_seconds, max_audio_seconds=config.max_audio_seconds,
                min_free_bytes=config.min_free_bytes)
        except DiskFull:
            janitor.poke()  # retention and the size cap may free space now, not in 10 minutes
            raise

    def start_avatar(source, name: str, options: dict) -> tuple[str, str]:
        """Record an avatar and queue the job that prepares it. Returns (avatar id, job id)."""
        avatar_id, job_id = new_id(), new_id()
        options = {**options, "train": config.train_on_prepare, "train_minutes": config.train_minutes}
        # The row first: a prepare job whose avatar row failed (disk full) would write a folder
        # nothing refers to. Either failing leaves neither the row nor the upload behind.
        try:
            store.add_avatar(avatar_id, name, "photo" if source.media.is_image else "video", job_id)
            try:
                queue.submit("prepare", {"source": source.rel, "avatar_dir": f"avatars/{avatar_id}"},
                             options, job_id=job_id, avatar_id=avatar_id)
            except BaseException:
                store.delete_avatar(avatar_id)
                raise
        except BaseException:
            source.path.unlink(missing_ok=True)
            raise
        return avatar_id, job_id

    def get_job_or_404(job_id: str) -> dict:
        job = store.get_job(job_id)
        if job is None:
            raise HTTPException(404, "no such job")
        return job

    # -- page, health, config -------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/health", tags=["service"])
    def health() -> dict[str, Any]:
        """Liveness, versions, queue depth and worker state. Never needs the API key."""
        import av
        import fastapi

        counts = store.counts()
        disk = disk_free(data_dir)
        disk["low"] = disk["free_bytes"] < config.min_free_bytes
        disk["min_free_bytes"] = config.min_free_bytes
        return {"status": "ok" if not disk["low"] else "degraded: disk almost full",
                "disk": disk,
                "housekeeping": {"keep_days": config.keep_days, "max_data_bytes": config.max_data_bytes,
                                 "last_sweep": janitor.last or None},
                "versions": {"lipdub": __version__, "python": platform.python_version(),
                             "fastapi": fastapi.__version__, "pyav": av.__version__,
                             "ffmpeg": ".".join(map(str, av.library_versions.get("libavformat", ())))},
                "engine": {"prepare": find_spec("lipdub.avatar") is not None,
                           "train": jobfns.renderer_trainable(),
                           "generate": find_spec("lipdub.pipeline") is not None},
                "queue": {"depth": counts["queued"], "running": counts["running"], "jobs": counts,
                          **queue.status()},
                "auth": bool(config.api_key)}

    @api.get("/config", tags=["service"])
    def get_config() -> dict[str, Any]:
        """Upload limits and the defaults of prepare and generate options."""
        return {"max_upload_bytes": config.max_upload_bytes,
                "max_audio_seconds": config.max_audio_seconds,
                "max_video_seconds": config.max_video_seconds,
                "workers": config.workers,
                "train_on_prepare": config.train_on_prepare,
                "prepare_options": jobfns.option_fields("lipdub.avatar", "PrepareOptions"),
                "generate_options": jobfns.public_generate_options(),
                "accepts": {"visual": "a video or a photo of one person (content is probed)",
                            "audio": "any audio file, or a video with a sound track"}}

    # -- avatars --------------------------------------------------------------------------------

    @api.post("/avatars", status_code=202, response_model=Accepted, tags=["avatars"],
              responses={413: {}, 415: {}, 422: {}})
    async def create_avatar(
        file: Annotated[UploadFile, File(description="video or photo of one person")],
        name: Annotated[str | None, Form(max_length=100)] = None,
        fps: Annotated[float, Form(ge=1, le=60)] = 25.0,
        smooth: Annotated[int, Form(ge=1, le=51)] = 5,
        face_index: Annotated[int | None, Form(ge=0, le=20)] = None,
        max_size: Annotated[int | None, Form(ge=64, le=4096)] = None,
    ) -> Accepted:
        """Upload footage or a photo; preparing it (and training its renderer) runs as a job."""
        source = await save(file, "visual")
        options = {"fps": fps, "smooth": smooth, "face_index": face_index, "max_size": max_size}
        avatar_id, job_id = start_avatar(source, display_name(name or file.filename), options)
        return Accepted(id=avatar_id, job_id=job_id, avatar_id=avatar_id,
                        status_url=f"/avatars/{avatar_id}")

    @api.get("/avatars", response_model=list[Avatar], tags=["avatars"])
    def list_avatars(limit: Annotated[int, Query(ge=1, le=500)] = 100,
                     offset: Annotated[int, Query(ge=0, le=10**9)] = 0) -> list[Avatar]:
        """Avatars, newest first."""
        return [Avatar(**a) for a in store.list_avatars(limit, offset)]

    @api.get("/avatars/{avatar_id}", response_model=Avatar, tags=["avatars"],
             responses={404: {}})
    def get_avatar(avatar_id: ID) -> Avatar:
        avatar = store.get_avatar(avatar_id)
        if avatar is None:
            raise HTTPException(404, "no such avatar")
        return Avatar(**avatar)

    @api.delete("/avatars/{avatar_id}", response_model=Deleted, tags=["avatars"],
                responses={404: {}, 409: {}})
    def delete_avatar(avatar_id: ID) -> Deleted:
        """Delete an avatar and its files (its preparation is cancelled if still running)."""
        avatar = store.get_avatar(avatar_id)
        if avatar is None:
            raise HTTPException(404, "no such avatar")
        users = [j for j in store.active_jobs_for_avatar(avatar_id) if j["id"] != avatar["job_id"]]
        if users:
            raise HTTPException(409, f"{len(users)} queued or running job(s) use this avatar; "
                                     "cancel them first")
        prep = store.get_job(avatar["job_id"])
        if prep is not None and prep["state"] not in FINAL:
            queue.cancel(prep["id"])
            # Let the job stop before its folder goes, or it could write files back into it.
            deadline = time.monotonic() + config.cancel_grace + 5
            while (store.get_job(prep["id"]) or {}).get("state") == "running" and time.monotonic() < deadline:
                time.sleep(0.1)
        store.delete_avatar(avatar_id)
        remove_tree(data_dir / "avatars" / avatar_id)
        if prep is not None and prep["params"]["inputs"].get("source"):
            (data_dir / prep["params"]["inputs"]["source"]).unlink(missing_ok=True)
        return Deleted(id=avatar_id, deleted=True)

    # -- jobs -----------------------------------------------------------------------------------

    async def create_job(audio: UploadFile, avatar_id: str | None, video: UploadFile | None,
                         options: str | None) -> Accepted:
        if (avatar_id is None) == (video is None):
            raise HTTPException(422, "give either avatar_id or an uploaded video/photo (not both)")
        try:
            opts = json.loads(options) if options else {}
        except json.JSONDecodeError:
            raise HTTPException(422, "options must be a JSON object") from None
        if not isinstance(opts, dict):
            raise HTTPException(422, "options must be a JSON object")
        problem = jobfns.check_generate_options(opts)
        if problem:
            raise HTTPException(422, problem)
        after = None
        if avatar_id is not None:
            avatar = store.get_avatar(avatar_id)
            if avatar is None:
                raise HTTPException(404, "no such avatar")
            if avatar["state"] == "failed":
                raise HTTPException(409, f"the avatar could not be prepared: {avatar['error']}")
            if avatar["state"] == "preparing":
                after = avatar["job_id"]
        sound = await save(audio, "audio")
        try:  # a failure before the job row exists must not leave its uploads behind
            if video is not None:
                source = await save(video, "visual")
                avatar_id, after = start_avatar(source, display_name(video.filename), {})
            job = queue.submit("generate", {"avatar_dir": f"avatars/{avatar_id}", "audio": sound.rel},
                               opts, avatar_id=avatar_id, after=after)
        except BaseException:
            sound.path.unlink(missing_ok=True)
            raise
        return Accepted(id=job["id"], job_id=job["id"], avatar_id=avatar_id,
                        status_url=f"/jobs/{job['id']}")

    job_errors = {404: {}, 409: {}, 413: {}, 415: {}, 422: {}}

    @api.post("/jobs", status_code=202, response_model=Accepted, tags=["jobs"],
              responses=job_errors)
    async def post_job(
        audio: Annotated[UploadFile, File(description="speech to lip-sync to")],
        avatar_id: Annotated[str | None, Form(pattern="^[0-9a-f]{32}$")] = None,
        video: Annotated[UploadFile | None, File(description="video or photo, instead of avatar_id")] = None,
        options: Annotated[str | None, Form(description="generate options as a JSON object")] = None,
    ) -> Accepted:
        """Queue a lip-sync job for an avatar (or for an uploaded video/photo, prepared first)."""
        return await create_job(audio, avatar_id, video, options)

    @api.post("/generate", status_code=202, response_model=Accepted, tags=["compat"],
              responses=job_errors)
    async def post_generate(
        audio: Annotated[UploadFile, File()],
        avatar_id: Annotated[str | None, Form(pattern="^[0-9a-f]{32}$")] = None,
        video: Annotated[UploadFile | None, File()] = None,
        options: Annotated[str | None, Form()] = None,
    ) -> Accepted:
        """Same as `POST /jobs` (the seed system's name)."""
        return await create_job(audio, avatar_id, video, options)

    @api.get("/jobs", response_model=list[Job], tags=["jobs"])
    def list_jobs(limit: Annotated[int, Query(ge=1, le=500)] = 100,
                  offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
                  state: Annotated[str | None, Query(pattern="^(queued|running|done|failed|cancelled)$")] = None,
                  kind: Annotated[str | None, Query(pattern="^(prepare|generate)$")] = None) -> list[Job]:
        """Jobs, newest first."""
        return [job_out(j) for j in store.list_jobs(limit, offset, state, kind)]

    @api.get("/jobs/{job_id}", response_model=Job, tags=["jobs"],
             responses={404: {}})
    def get_job(job_id: ID) -> Job:
        """State (queued, running, done, failed, cancelled), stage, progress 0..1 and error."""
        return job_out(get_job_or_404(job_id))

    @api.get("/status/{job_id}", response_model=Job, tags=["compat"],
             responses={404: {}})
    def status_alias(job_id: ID) -> Job:
        """Same as `GET /jobs/{id}`."""
        return job_out(get_job_or_404(job_id))

    def result_file(job_id: str) -> FileResponse:
        job = get_job_or_404(job_id)
        output = (job.get("result") or {}).get("output")
        if job["state"] != "done" or not output:
            what = job["error"] or job["state"]
            raise HTTPException(409, f"no result: the job is {job['state']}"
                                     + (f" ({what})" if job["error"] else ""))
        path = data_dir / output
        if not path.is_file():
            raise HTTPException(404, "the result file is gone")
        return FileResponse(path, media_type="video/mp4", filename=f"lipdub-{job_id[:8]}.mp4",
                            content_disposition_type="inline")

    file_responses = {200: {"content": {"video/mp4": {}}, "description": "the MP4"},
                      206: {"description": "part of it (Range)"}, 404: {}, 409: {}, 416: {}}

    @api.get("/jobs/{job_id}/result", tags=["jobs"], response_class=FileResponse,
             responses=file_responses)
    def get_result(job_id: ID):
        """The finished MP4; supports HTTP Range (206) for seeking in players."""
        return result_file(job_id)

    @api.get("/download/{job_id}", tags=["compat"], response_class=FileResponse,
             responses=file_responses)
    def download_alias(job_id: ID):
        """Same as `GET /jobs/{id}/result`."""
        return result_file(job_id)

    @api.delete("/jobs/{job_id}", status_code=202, response_model=Job, tags=["jobs"],
                responses={404: {}, 409: {}})
    def cancel_job(job_id: ID) -> Job:
        """Cancel a queued or running job (a running one stops within about a second)."""
        job = get_job_or_404(job_id)
        if job["state"] in FINAL:
            raise HTTPException(409, f"the job already ended ({job['state']})")
        return job_out(queue.cancel(job_id))

    app.include_router(api)
    from lipdub.server.live import add_live_routes  # /ws/stream: live mode (needs `websockets`)

    add_live_routes(app)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc):
        # Starlette lists only the first route's method in a 405's Allow header; GET and DELETE
        # on one path are two routes here, so list all of them.
        if exc.status_code == 405:
            allowed = sorted({m for r in app.router.routes if isinstance(r, Route)
                              and r.matches({"type": "http", "path": request.url.path,
                                             "method": "GET"})[0] != Match.NONE
                              for m in (r.methods or ())})
            exc = StarletteHTTPException(405, exc.detail, headers={"Allow": ", ".join(allowed)})
        return await http_exception_handler(request, exc)

    @app.exception_handler(OSError)
    @app.exception_handler(sqlite3.OperationalError)
    async def storage_error(request, exc):
        # The database and the files already there are intact (SQLite writes are transactions):
        # only this request failed. A full disk is the client's 507; the rest is ours.
        if is_disk_full(exc):
            log.error("disk full on %s %s: %s", request.method, request.url.path, exc)
            janitor.poke()
            return JSONResponse({"detail": "the server's disk is full: nothing was saved; "
                                           "try again later"}, status_code=507)
        log.exception("storage error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "the server could not reach its storage; try again"},
                            status_code=503)

    @app.exception_handler(Exception)
    async def internal_error(request, exc):  # a bug: log it, answer without internals
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal server error"}, status_code=500)

    return app


def serve(config: ServerConfig, *, jobs: dict[str, JobFn] | None = None) -> None:
    """Run the server until interrupted (what `lipdub serve` calls)."""
    import uvicorn

    logging.basicConfig(level=getattr(logging, config.log_level.upper(), logging.INFO),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    app = create_app(config, jobs=jobs)
    uvicorn.run(app, host=config.host, port=config.port, log_level=config.log_level,
                timeout_graceful_shutdown=5)
