"""The page in a real browser: Debian's Chromium, headless, driven by Playwright.

Uploads the fixture clip and speech through the page's file inputs, watches the job's progress
bar move, and checks that the result <video> gets a source the browser can actually decode.
Screenshots (desktop and phone width) are saved under the test's tmp dir; the path is printed.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from lipdub.errors import InputError

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def slow_prepare(ctx):
    """~1.5 s of visible progress, then what fake_generate needs."""
    from test_server_api import fake_prepare

    for i in range(15):
        ctx.progress("tracking faces", i / 15)
        time.sleep(0.1)
    return fake_prepare(ctx)


def slow_generate(ctx):
    """~3 s of visible progress; the 'result' is the uploaded clip (real H.264 + AAC)."""
    from test_server_api import fake_generate

    if not ctx.path(ctx.inputs["avatar_dir"]).is_dir():
        raise InputError("the avatar was deleted before this job ran")
    for i in range(30):
        ctx.progress("rendering", i / 30)
        time.sleep(0.1)
    return fake_generate(ctx)


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed "
                                                                   "(pip install playwright)")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def base_url(tmp_path):
    from test_server_load import running_server

    from lipdub.server import ServerConfig, create_app

    app = create_app(ServerConfig(data_dir=tmp_path / "data", workers=1, isolation="thread"),
                     jobs={"prepare": slow_prepare, "generate": slow_generate})
    with running_server(app) as url:
        yield url


def test_page_upload_progress_and_playable_result(browser, base_url, tmp_path, talking_clip, speech_wav):
    page = browser.new_page(viewport={"width": 1000, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(base_url)
    page.wait_for_selector("#health:has-text('workers busy')")

    # A text file named .mp4: refused, and the page says why in words.
    fake = tmp_path / "notes.mp4"
    fake.write_text("not a video\n" * 20)
    page.set_input_files("#visual-input", str(fake))
    page.wait_for_selector("#alert.show")
    assert "could not be read as media" in page.inner_text("#alert")

    page.set_input_files("#visual-input", str(talking_clip))
    page.wait_for_selector("#avatars li.avatar")
    page.set_input_files("#audio-input", str(speech_wav))
    page.wait_for_selector("#go:not([disabled])")
    page.click("#go")
    assert not page.is_visible("#alert")

    # Sample the lip-sync job's bar while it runs: it must take several values on its way.
    shots = tmp_path / "screenshots"
    shots.mkdir()
    seen: set[int] = set()
    deadline = time.monotonic() + 60
    while not page.query_selector("li.job[data-state='done'] video.result"):
        for value in page.eval_on_selector_all(
                "li.job[data-state='running'] .bar", "bars => bars.map(b => b.getAttribute('aria-valuenow'))"):
            if value is not None:
                seen.add(int(value))
                if 20 <= int(value) <= 80 and not (shots / "progress.png").exists():
                    page.screenshot(path=str(shots / "progress.png"))
        assert time.monotonic() < deadline, "the job did not finish in the page"
        time.sleep(0.1)
    assert len({v for v in seen if 0 < v < 100}) >= 2, f"progress bar did not move: {sorted(seen)}"

    # The <video> has a source Chromium can decode: metadata loaded, real duration, no error.
    page.wait_for_function("() => { const v = document.querySelector('video.result');"
                           " return v && v.readyState >= 1 && v.duration > 0 }", timeout=20_000)
    state = page.evaluate("() => { const v = document.querySelector('video.result');"
                          " return {src: v.currentSrc, error: v.error && v.error.code, duration: v.duration,"
                          " width: v.videoWidth, href: v.parentElement.querySelector('a[download]').href} }")
    assert state["error"] is None and abs(state["duration"] - 2.0) < 0.3 and state["width"] == 512
    assert state["src"].endswith("/result") and state["href"] == state["src"]
    assert not errors, errors

    page.screenshot(path=str(shots / "desktop.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    page.screenshot(path=str(shots / "phone.png"), full_page=True)
    assert overflow <= 0, f"page is {overflow}px wider than a phone screen"
    print(f"\nscreenshots: {sorted(str(p) for p in shots.iterdir())}")
    page.close()


def test_page_with_api_key(browser, tmp_path, talking_clip):
    """With --api-key the page asks for the key and then works (the result is fetched with it)."""
    from test_server_api import FAKES
    from test_server_load import running_server

    from lipdub.server import ServerConfig, create_app

    app = create_app(ServerConfig(data_dir=tmp_path / "data", isolation="thread", api_key="k3y"), jobs=FAKES)
    with running_server(app) as url:
        page = browser.new_page()
        page.goto(url)
        page.wait_for_selector("#alert.show")
        assert "API key" in page.inner_text("#alert")
        page.fill("#api-key", "k3y")
        page.dispatch_event("#api-key", "change")
        page.set_input_files("#visual-input", str(talking_clip))
        page.wait_for_selector("#avatars li.avatar .status.state-ready", timeout=20_000)
        page.close()
