"""Live mode: ``/ws/stream?avatar=ID`` streams microphone audio in and lip-synced frames out.

Protocol (one WebSocket per viewer):

- client → server: binary messages of 16 kHz mono int16 little-endian PCM, any size; a text
  message ``{"type": "end"}`` flushes the last frames (the server then sends ``done`` and closes).
- server → client: ``{"type": "ready", fps, width, height, lookahead}`` once the avatar's models
  are loaded; then per frame a text message ``{"type": "frame", index, t, speaking, latency_ms,
  bytes}`` immediately followed by one binary message, the frame as JPEG; every second
  ``{"type": "stats", frames, dropped, latency_ms: {p50, p95, max}, step_ms}``; ``{"type":
  "error", detail}`` before closing on a problem.

With ``--api-key`` the key goes in the query (``&key=KEY``: browsers cannot set headers on a
WebSocket) or in the ``X-API-Key`` / ``Authorization: Bearer`` headers. Each connection gets its
own engine thread; a disconnect stops it (the engine thread ends within one chunk's work) and the
session is removed from ``app.state.live_sessions``. A viewer that reads too slowly loses frames
(counted as ``dropped``) rather than growing the server's memory.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import queue
import re
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

log = logging.getLogger("lipdub.server.live")
MAX_BACKLOG = 50          # frames waiting to be sent before new ones are dropped
MAX_CHUNK_BYTES = 1 << 20
JPEG_QUALITY = 80
_ID = re.compile("^[0-9a-f]{32}$")


class LiveSession:
    """One viewer: the engine thread, its input queue and the frames waiting to be sent."""

    def __init__(self, engine, loop: asyncio.AbstractEventLoop):
        self.engine = engine
        self.loop = loop
        self.inbox: queue.Queue = queue.Queue(maxsize=400)
        self.outbox: asyncio.Queue = asyncio.Queue()
        self.stop = threading.Event()
        self.dropped = 0
        self.frames = 0
        self.latencies: deque[float] = deque(maxlen=250)
        self.thread = threading.Thread(target=self._run, name=f"lipdub-live-{id(self):x}", daemon=True)

    def _emit(self, item) -> None:
        try:
            self.loop.call_soon_threadsafe(self.outbox.put_nowait, item)
        except RuntimeError:  # loop closed: the connection is gone
            self.stop.set()

    def _send_frames(self, frames) -> None:
        import cv2

        for f in frames:
            if self.outbox.qsize() > MAX_BACKLOG:
                self.dropped += 1
                continue
            ok, jpeg = cv2.imencode(".jpg", f.image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            latency = time.monotonic() - f.received
            self.latencies.append(latency)
            self.frames += 1
            meta = {"type": "frame", "index": f.index, "t": round(f.time, 4),
                    "speaking": round(f.speaking, 3), "latency_ms": round(1000 * latency, 1),
                    "bytes": int(jpeg.size)}
            self._emit((meta, jpeg.tobytes()))

    def _run(self) -> None:
        try:
            while not self.stop.is_set():
                try:
                    chunk = self.inbox.get(timeout=0.02)
                except queue.Empty:  # the engine's threads may have finished frames meanwhile
                    self._send_frames(self.engine.poll())
                    continue
                if chunk is None:
                    if not self.stop.is_set():
                        self._send_frames(self.engine.finish())
                        self._emit(({"type": "done", "frames": self.frames, "dropped": self.dropped}, None))
                    break
                self._send_frames(self.engine.feed(chunk))
        except Exception as exc:  # a bug or bad data: tell the client, end the session
            log.exception("live session failed")
            self._emit(({"type": "error", "detail": f"streaming failed: {exc}"}, None))
        finally:
            self.engine.close()
            self._emit(None)

    def stats(self) -> dict:
        lat = np.asarray(self.latencies) * 1000 if self.latencies else np.zeros(1)
        t = self.engine.timings
        steps = max(1, t.get("steps", 0))
        return {"type": "stats", "frames": self.frames, "dropped": self.dropped,
                "latency_ms": {"p50": round(float(np.percentile(lat, 50)), 1),
                               "p95": round(float(np.percentile(lat, 95)), 1),
                               "max": round(float(lat.max()), 1)},
                "step_ms": round(1000 * (t["features"] + t["motion"] + t["render"]) / steps, 1)}


def _key_ok(websocket: WebSocket, key: str | None) -> bool:
    if not key:
        return True
    given = websocket.query_params.get("key") or websocket.headers.get("x-api-key") or ""
    auth = websocket.headers.get("authorization") or ""
    if not given and auth[:7].lower() == "bearer ":
        given = auth[7:].strip()
    return bool(given) and hmac.compare_digest(given.encode(), key.encode())


def default_resolver(app: FastAPI):
    """avatar id -> prepared, trained avatar folder (LookupError with the reason otherwise)."""

    def resolve(avatar_id: str) -> Path:
        if not _ID.match(avatar_id or ""):
            raise LookupError("avatar must be an avatar id")
        avatar = app.state.store.get_avatar(avatar_id)
        if avatar is None:
            raise LookupError("no such avatar")
        if avatar["state"] != "ready":
            raise LookupError(f"the avatar is {avatar['state']}, not ready")
        folder = Path(app.state.config.data_dir) / "avatars" / avatar_id
        if not (folder / "renderer.onnx").exists():
            raise LookupError("the avatar has no trained renderer")
        return folder

    return resolve


def add_live_routes(app: FastAPI) -> None:
    """Register ``/ws/stream`` on ``app`` (``app.state.live_resolve`` may be replaced in tests)."""
    app.state.live_sessions = set()
    app.state.live_resolve = default_resolver(app)
    app.state.live_options = None  # a lipdub.stream.StreamOptions, or the defaults

    @app.websocket("/ws/stream")
    async def ws_stream(websocket: WebSocket):
        await websocket.accept()
        if not _key_ok(websocket, app.state.config.api_key):
            await websocket.send_json({"type": "error", "detail": "missing or wrong API key: add &key=KEY"})
            await websocket.close(code=4401)
            return
        try:
            folder = app.state.live_resolve(websocket.query_params.get("avatar", ""))
        except LookupError as exc:
            await websocket.send_json({"type": "error", "detail": str(exc)})
            await websocket.close(code=4404)
            return
        from lipdub.stream import StreamOptions, Streamer

        # microphone input is real time: late frames repeat the last image rather than pile up
        options = app.state.live_options or StreamOptions(max_latency=0.4)
        try:
            engine = await run_in_threadpool(Streamer, folder, options)
        except Exception as exc:
            log.exception("cannot start a live session")
            await websocket.send_json({"type": "error", "detail": f"cannot load the avatar: {exc}"})
            await websocket.close(code=1011)
            return
        session = LiveSession(engine, asyncio.get_running_loop())
        app.state.live_sessions.add(session)
        session.thread.start()
        sender = asyncio.create_task(_sender(websocket, session))
        try:
            av = engine.avatar
            await websocket.send_json({"type": "ready", "fps": engine.fps, "width": av.width,
                                       "height": av.height, "lookahead": options.lookahead})
            while True:
                msg = await websocket.receive()
                if msg["type"] == "websocket.disconnect":
                    break
                data = msg.get("bytes")
                if data is not None:
                    if len(data) > MAX_CHUNK_BYTES or len(data) % 2:
                        await websocket.send_json({"type": "error", "detail": "send int16 PCM chunks under 1 MiB"})
                        break
                    await _put(session, bytes(data))
                elif msg.get("text"):
                    try:
                        kind = json.loads(msg["text"]).get("type")
                    except (ValueError, AttributeError):
                        kind = None
                    if kind == "end":
                        await _put(session, None)
                        await asyncio.wait_for(asyncio.shield(sender), timeout=60)
                        break
        except (WebSocketDisconnect, RuntimeError, asyncio.TimeoutError):
            pass
        finally:
            session.stop.set()
            try:
                session.inbox.put_nowait(None)
            except queue.Full:
                pass
            sender.cancel()
            try:
                await sender
            except BaseException:
                pass
            await run_in_threadpool(session.thread.join, 10)
            app.state.live_sessions.discard(session)
            try:
                await websocket.close()
            except Exception:
                pass


async def _put(session: LiveSession, item) -> None:
    """Queue a chunk for the engine, waiting (bounded) if it is behind."""
    for _ in range(600):
        try:
            session.inbox.put_nowait(item)
            return
        except queue.Full:
            await asyncio.sleep(0.05)
    raise RuntimeError("the streaming engine stopped taking audio")


async def _sender(websocket: WebSocket, session: LiveSession) -> None:
    last_stats = time.monotonic()
    while True:
        item = await session.outbox.get()
        if item is None:
            await websocket.send_json(session.stats())
            return
        meta, payload = item
        await websocket.send_text(json.dumps(meta))
        if payload is not None:
            await websocket.send_bytes(payload)
        if time.monotonic() - last_stats >= 1.0:
            last_stats = time.monotonic()
            await websocket.send_json(session.stats())
        if meta.get("type") == "error":
            await websocket.close(code=1011)
            return
