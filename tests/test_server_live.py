"""Live mode over a real WebSocket (uvicorn + the `websockets` client): frames come back as JPEG
with timestamps; a client that disconnects mid-stream leaves nothing running; two at once work."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from lipdub.audio import load_audio, n_frames_for

ws_client = pytest.importorskip("websockets.sync.client", reason="pip install websockets")


@pytest.fixture(scope="module")
def avatar_dir(tmp_path_factory, talking_clip):
    from test_stream import stream_avatar

    return stream_avatar(tmp_path_factory.getbasetemp(), talking_clip)


@pytest.fixture(scope="module")
def pcm(speech_wav):
    return (np.clip(load_audio(speech_wav), -1, 1) * 32767).astype("<i2")


@pytest.fixture
def server(tmp_path, avatar_dir):
    from test_server_api import FAKES
    from test_server_load import running_server

    from lipdub.server import ServerConfig, create_app

    app = create_app(ServerConfig(data_dir=tmp_path / "data", isolation="thread", api_key="k3y"), jobs=FAKES)
    app.state.live_resolve = lambda avatar_id: avatar_dir if avatar_id == "a" * 32 else (_ for _ in ()).throw(
        LookupError("no such avatar"))
    with running_server(app) as url:
        yield app, url.replace("http://", "ws://") + "/ws/stream"


def cleaned_up(app, timeout=15.0) -> bool:
    """No live session and no engine thread left (waits for the server's cleanup, bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [t for t in threading.enumerate() if t.name.startswith("lipdub-live-")]
        if not app.state.live_sessions and not alive:
            return True
        time.sleep(0.05)
    return False


def stream_all(url, pcm, chunk=320, pace=0.0):
    """Send all of pcm, then end; returns (messages, frames as (meta, jpeg))."""
    msgs, frames = [], []
    with ws_client.connect(url, open_timeout=30, max_size=None) as ws:
        ready = json.loads(ws.recv(timeout=30))
        assert ready["type"] == "ready", ready
        stop = threading.Event()

        def send():
            for s in range(0, len(pcm), chunk):
                ws.send(pcm[s:s + chunk].tobytes())
                if pace:
                    time.sleep(pace)
            ws.send(json.dumps({"type": "end"}))
            stop.set()

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        pending = None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            m = ws.recv(timeout=60)
            if isinstance(m, bytes):
                frames.append((pending, m))
                pending = None
                continue
            m = json.loads(m)
            msgs.append(m)
            if m["type"] == "frame":
                pending = m
            if m["type"] in ("done", "error"):
                break
        # the final stats message follows done
        try:
            msgs.append(json.loads(ws.recv(timeout=10)))
        except Exception:
            pass
        sender.join(10)
    return msgs, frames


def test_frames_come_back_as_timestamped_jpegs(server, pcm):
    import cv2

    app, url = server
    msgs, frames = stream_all(url + "?avatar=" + "a" * 32 + "&key=k3y", pcm)
    n = n_frames_for(len(pcm) / 16000, 25.0)
    assert [m["type"] for m in msgs if m["type"] == "done"] == ["done"], msgs[-3:]
    assert [meta["index"] for meta, _ in frames] == list(range(n))
    assert np.allclose([meta["t"] for meta, _ in frames], np.arange(n) / 25.0, atol=1e-3)
    img = cv2.imdecode(np.frombuffer(frames[n // 2][1], np.uint8), cv2.IMREAD_COLOR)
    assert img is not None and img.shape == (512, 512, 3)
    stats = [m for m in msgs if m["type"] == "stats"]
    assert stats and stats[-1]["frames"] == n and stats[-1]["dropped"] == 0
    assert stats[-1]["latency_ms"]["p50"] > 0
    assert cleaned_up(app)


def test_disconnect_mid_stream_cleans_up(server, pcm):
    app, url = server
    with ws_client.connect(url + "?avatar=" + "a" * 32, open_timeout=30,
                           additional_headers={"X-API-Key": "k3y"}) as ws:
        assert json.loads(ws.recv(timeout=30))["type"] == "ready"
        for s in range(0, 16000, 320):
            ws.send(pcm[s:s + 320].tobytes())
        got = 0
        while got < 3:  # a few frames, then hang up mid-stream
            if isinstance(ws.recv(timeout=30), bytes):
                got += 1
        assert len(app.state.live_sessions) == 1
    deadline = time.monotonic() + 15
    while app.state.live_sessions and time.monotonic() < deadline:
        time.sleep(0.05)
    assert cleaned_up(app)
    alive = [t.name for t in threading.enumerate() if t.name.startswith("lipdub-live-")]
    assert not alive, alive


def test_two_clients_at_once(server, pcm):
    app, url = server
    results = {}

    def client(name):
        results[name] = stream_all(url + "?avatar=" + "a" * 32 + "&key=k3y", pcm[:32000], chunk=640)

    threads = [threading.Thread(target=client, args=(k,)) for k in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    n = n_frames_for(2.0, 25.0)
    for name in ("a", "b"):
        _, frames = results[name]
        assert [meta["index"] for meta, _ in frames] == list(range(n)), name
    assert cleaned_up(app)


def test_key_and_avatar_are_checked(server):
    _, url = server
    for query, code in (("?avatar=" + "a" * 32 + "&key=wrong", 4401), ("?avatar=" + "b" * 32 + "&key=k3y", 4404)):
        with ws_client.connect(url + query, open_timeout=30) as ws:
            msg = json.loads(ws.recv(timeout=30))
            assert msg["type"] == "error"
            with pytest.raises(Exception):
                ws.recv(timeout=10)
            assert ws.close_code == code


def test_page_live_mode_in_chromium_with_a_fake_microphone(server, speech_wav, tmp_path):
    """Chromium's fake microphone plays the speech WAV; the page's live mode sends it and draws
    the frames that come back on its canvas (frame counter, non-blank pixels); screenshot saved."""
    import shutil
    import subprocess
    from pathlib import Path

    import imageio_ffmpeg

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.skip(f"no Chromium at {chromium}")
    sync_api = pytest.importorskip("playwright.sync_api")
    app, ws_url = server
    url = ws_url.replace("ws://", "http://").rsplit("/ws/", 1)[0]
    wav = tmp_path / "mic.wav"  # Chromium's fake capture wants plain 16-bit PCM WAV
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(speech_wav),
                    "-ac", "1", "-ar", "48000", "-c:a", "pcm_s16le", str(wav)], check=True)
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={wav}", "--autoplay-policy=no-user-gesture-required"]
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=args, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 1400})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(url)
            page.fill("#api-key", "k3y")
            page.dispatch_event("#api-key", "change")
            page.evaluate("() => { state.avatar = '" + "a" * 32 + "'; }")
            page.click("#live-start")
            page.wait_for_function("() => Number(document.querySelector('#live-canvas').dataset.frames || 0) >= 25",
                                   timeout=45_000)
            lit = page.evaluate("""() => { const c = document.querySelector('#live-canvas');
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i] + d[i+1] + d[i+2] > 30) n++;
                return n / (c.width * c.height); }""")
            assert lit > 0.5, f"canvas mostly blank ({lit:.2f} lit)"
            assert "ms" in page.inner_text("#live-latency")
            page.screenshot(path=str(shots / "live.png"), full_page=True)
            print(f"\nlive screenshot: {shots / 'live.png'}; latency {page.inner_text('#live-latency')}; "
                  f"server {page.inner_text('#live-server')}")
            page.click("#live-stop")
            assert not errors, errors
            page.close()
        finally:
            browser.close()
    assert cleaned_up(app, timeout=20)
