"""Uploads: a request-size guard, and saving + probing uploaded media under server-made names.

The size guard is plain ASGI so it answers 413 from the Content-Length header before any of the
body is read, and counts bytes of bodies that have none (chunked). Starlette spools file parts
to a temporary file past 1 MB, so an upload is never held whole in memory; ``save_upload`` copies
it chunk by chunk to ``uploads/<uuid><ext>``, where the extension comes from the probed content,
never from the client's filename.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from fastapi import HTTPException, UploadFile

from lipdub.errors import InputError
from lipdub.jobstore.housekeeping import FULL_ERRNOS

CHUNK = 1024 * 1024

# ffmpeg demuxer name -> extension we store the file under (ffmpeg sniffs content anyway; a
# fitting extension keeps other tools that trust extensions happy).
_EXT = {"mov,mp4,m4a,3gp,3g2,mj2": ".mp4", "matroska,webm": ".mkv", "avi": ".avi",
        "mpegts": ".ts", "flv": ".flv", "gif": ".gif", "wav": ".wav", "mp3": ".mp3",
        "ogg": ".ogg", "flac": ".flac", "aac": ".aac", "png_pipe": ".png", "jpeg_pipe": ".jpg",
        "webp_pipe": ".webp", "bmp_pipe": ".bmp", "tiff_pipe": ".tif"}


class DiskFull(HTTPException):
    def __init__(self):
        super().__init__(507, "the server's disk is full: the upload was not saved; try again later")


class UploadTooLarge(HTTPException):
    def __init__(self, limit: int):
        super().__init__(413, f"upload too large: the limit is {limit // (1024 * 1024)} MB "
                              f"({limit} bytes) per request")


class BodyLimitMiddleware:
    """Refuse request bodies over ``limit`` bytes with 413, reading as little as possible."""

    def __init__(self, app, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await _send_json(send, 413, UploadTooLarge(self.limit).detail)
        seen = 0
        started = False

        async def counted_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise UploadTooLarge(self.limit)
            return message

        async def tracked_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except UploadTooLarge as exc:
            if started:
                raise
            await _send_json(send, 413, exc.detail)


async def _send_json(send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


@dataclass(frozen=True)
class MediaFacts:
    format: str  # ffmpeg demuxer name
    is_image: bool
    has_video: bool
    has_audio: bool
    duration: float  # seconds of video, or of audio for audio-only files; 0 for photos
    audio_duration: float
    width: int
    height: int


def probe_media(path: Path) -> MediaFacts:
    """What the content really is, via lipdub.video.probe (ffmpeg through PyAV).

    Raises InputError for anything that is not decodable media; its message names the server's
    own path, so callers show a message of their own.
    """
    import av

    from lipdub.video import probe

    info = probe(path)  # decodes a first frame: a plausible header alone does not pass
    try:
        with av.open(str(path)) as c:
            fmt = c.format.name
    except (av.error.FFmpegError, OSError):
        raise InputError("not media") from None
    if fmt in ("tty", "srt", "ass", "webvtt", "lrc"):  # text formats ffmpeg also "reads"
        raise InputError("not media")
    return MediaFacts(format=fmt, is_image=info.is_image, has_video=info.has_video,
                      has_audio=info.has_audio, duration=info.duration,
                      audio_duration=info.audio_duration, width=info.width, height=info.height)


@dataclass(frozen=True)
class SavedUpload:
    path: Path  # absolute
    rel: str  # relative to the data dir: what job rows store
    media: MediaFacts


def save_upload(upload: UploadFile, data_dir: Path, want: str, *, limit: int,
                max_video_seconds: float, max_audio_seconds: float,
                min_free_bytes: int = 0) -> SavedUpload:
    """Copy an upload to the data dir and check what it really is. Runs in a worker thread.

    ``want`` is "visual" (a video or a photo with a face) or "audio" (anything with sound,
    a video's audio track included). Raises HTTPException 413/415/422 with a readable message,
    507 when the disk is full (or would be left with less than ``min_free_bytes``).
    """
    upload_dir = data_dir / "uploads"
    upload_dir.mkdir(parents=True, exist_ok=True)
    # the upload's own size counts too (when the client said it): it must not eat the reserve
    if shutil.disk_usage(upload_dir).free - (getattr(upload, "size", None) or 0) < min_free_bytes:
        raise DiskFull()
    name = uuid.uuid4().hex
    part = upload_dir / f"{name}.part"
    label = "video or photo" if want == "visual" else "audio file"
    try:
        upload.file.seek(0)
        written = 0
        try:
            with open(part, "wb") as out:
                while chunk := upload.file.read(CHUNK):
                    written += len(chunk)
                    if written > limit:
                        raise UploadTooLarge(limit)
                    out.write(chunk)
        except OSError as exc:
            if exc.errno in FULL_ERRNOS:
                raise DiskFull() from None
            raise
        if written == 0:
            raise HTTPException(422, f"the {label} is empty")
        try:
            media = probe_media(part)
        except InputError as exc:
            reason = str(exc).replace(str(part), "the file")
            raise HTTPException(415, f"the {label} could not be read as media: not a video, photo "
                                     f"or audio file that ffmpeg understands ({reason})") from None
        if want == "visual":
            if not media.has_video:
                raise HTTPException(415, "expected a video or a photo, got a file with no picture")
            if not media.is_image and media.duration > max_video_seconds:
                raise HTTPException(422, f"the video is {media.duration:.0f} s long; the limit is "
                                         f"{max_video_seconds:g} s")
        else:
            if not media.has_audio:
                raise HTTPException(415, "expected audio, got a file with no sound track")
            if media.audio_duration > max_audio_seconds:
                raise HTTPException(422, f"the audio is {media.audio_duration:.0f} s long; the limit is "
                                         f"{max_audio_seconds:g} s")
        final = upload_dir / f"{name}{_EXT.get(media.format, '.bin')}"
        os.replace(part, final)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return SavedUpload(path=final, rel=str(final.relative_to(data_dir)), media=media)


def display_name(filename: str | None) -> str:
    """The client's filename, reduced to something safe to show (never used as a path)."""
    base = os.path.basename((filename or "").replace("\\", "/"))
    clean = "".join(ch for ch in base if ch.isprintable())[:100].strip()
    return clean or "upload"


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
