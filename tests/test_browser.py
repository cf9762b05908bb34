"""The web page in a real browser: headless Chromium driven by Selenium through the Debian
``chromedriver`` (no Selenium Manager, no network) against ``vocalsep serve``.

A screenshot of the finished page is saved in the test's temporary folder, and also to the
path in ``$VOCALSEP_SCREENSHOT`` when set (that is how docs/web/screenshot.png is made:
``VOCALSEP_SCREENSHOT=docs/web/screenshot.png python -m pytest tests/test_browser.py``).
"""
from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import IN_CI, Server
from vocalsep.audio import read_audio

webdriver = pytest.importorskip("selenium.webdriver")
httpx = pytest.importorskip("httpx")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium downloading into its own folder (``browser.download_dir``)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_exe = shutil.which("chromedriver")
    if not (chromium and driver_exe):
        (pytest.fail if IN_CI else pytest.skip)("chromium and chromedriver are not installed "
                                                 "(apt-get install chromium chromium-driver)")
    downloads = tmp_path_factory.mktemp("downloads")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1200", "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_exe), options=options)
    driver.download_dir = downloads
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("jobs"), model="default")
    yield server
    server.stop()


def _state(driver) -> str:
    return driver.find_element(By.TAG_NAME, "body").get_attribute("data-state")


def test_page_separates_a_song(browser, server, mir1k_test_clip, tmp_path):
    wait = WebDriverWait(browser, 60, poll_frequency=0.1)
    browser.get(server.url("/"))
    wait.until(lambda d: d.find_element(By.ID, "model").is_displayed())
    assert "model: default" in browser.find_element(By.ID, "model").text
    assert "up to 200 MB" in browser.find_element(By.ID, "limits").text
    picker = browser.find_element(By.ID, "file")

    # a file that is not audio: a clear message, no results
    bad = tmp_path / "notes.wav"
    bad.write_text("this is a text file, not audio\n" * 10)
    picker.send_keys(str(bad))
    wait.until(lambda d: _state(d) == "failed" and d.find_element(By.ID, "error").is_displayed())
    message = browser.find_element(By.ID, "error").text
    assert message.startswith("notes.wav: not a readable audio file"), message
    assert not browser.find_element(By.ID, "results").is_displayed()

    # a real clip: progress through the API, then both players, the images and the downloads
    seen = set()
    picker.send_keys(str(mir1k_test_clip))

    def finished(d) -> bool:
        seen.add(_state(d))
        return _state(d) in ("done", "failed")

    wait.until(finished)
    assert _state(browser) == "done", browser.find_element(By.ID, "error").text
    assert seen & {"uploading", "queued", "running"}, seen
    assert not browser.find_element(By.ID, "error").is_displayed()
    assert browser.find_element(By.ID, "progress").get_attribute("value") == "1"
    assert browser.find_element(By.ID, "filename").text == mir1k_test_clip.name
    assert browser.find_element(By.ID, "status").text.startswith("done in ")

    duration = read_audio(mir1k_test_clip).duration
    for stem in ("vocals", "accompaniment"):
        wait.until(lambda d: d.execute_script(
            "const a = document.getElementById(arguments[0]);"
            "return a.readyState >= 1 && a.duration > 0;", stem))
        player = browser.execute_script(
            "const a = document.getElementById(arguments[0]);"
            "return {duration: a.duration, error: a.error && a.error.code};", stem)
        assert player["error"] is None and abs(player["duration"] - duration) < 0.05, player
    for name in ("input", "vocals"):
        wait.until(lambda d: d.execute_script(
            "const i = document.getElementById(arguments[0]); return i.complete && i.naturalWidth > 300;",
            f"spectrogram-{name}"))

    job_id = browser.current_url.rsplit("#", 1)[1]
    for stem in ("vocals", "accompaniment"):
        browser.find_element(By.ID, f"{stem}-download").click()
        target = browser.download_dir / f"{mir1k_test_clip.stem} - {stem}.wav"
        deadline = time.monotonic() + 30
        while not target.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert target.exists(), sorted(p.name for p in browser.download_dir.iterdir())
        served = httpx.get(server.url(f"/api/jobs/{job_id}/{stem}")).content
        assert target.read_bytes() == served
        assert read_audio(target).duration == pytest.approx(duration)

    problems = [e["message"] for e in browser.get_log("browser")
                if e["level"] == "SEVERE" and "/api/jobs " not in e["message"]  # the refused upload
                and "415" not in e["message"]]
    assert not problems, problems

    # the finished page, whole
    browser.execute_script("window.scrollTo(0, 0)")
    height, frame = browser.execute_script(
        "return [Math.ceil(document.querySelector('footer').getBoundingClientRect().bottom),"
        " window.outerHeight - window.innerHeight]")
    browser.set_window_size(1280, height + frame)
    shot = tmp_path / "screenshot.png"
    assert browser.save_screenshot(str(shot))
    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 50_000
    if os.environ.get("VOCALSEP_SCREENSHOT"):
        target = Path(os.environ["VOCALSEP_SCREENSHOT"])
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target)


def test_the_song_without_its_voice_plays_while_it_is_separated(browser, mir1k_quality_clips, tmp_path):
    """The player under the progress bar streams the accompaniment (``/api/jobs/ID/live``) and
    Chromium plays it while the job is still running; the server, stopped while the page still
    listens, cuts the stream and exits by itself."""
    server = Server(tmp_path / "jobs", model="default")
    try:
        _plays_while_separated(browser, server, mir1k_quality_clips, tmp_path)
        server.stop()
        # SIGTERM's own exit, not the kill that stop() sends when its wait runs out
        assert server.proc.returncode in (0, -signal.SIGTERM), server.proc.returncode
    finally:
        server.stop()


def _plays_while_separated(browser, server, mir1k_quality_clips, tmp_path) -> None:
    clips = [read_audio(c).samples for c in mir1k_quality_clips]
    song = np.concatenate(clips * -(-300 // sum(c.shape[1] // 16000 for c in clips)), axis=1)
    path = tmp_path / "long song.flac"
    sf.write(path, song.T, 16000)  # 5 minutes: separated in several seconds, block by block
    wait = WebDriverWait(browser, 120, poll_frequency=0.05)
    browser.get(server.url("/"))
    wait.until(lambda d: d.find_element(By.ID, "model").is_displayed())
    browser.find_element(By.ID, "file").send_keys(str(path))
    wait.until(lambda d: d.find_element(By.ID, "live").is_displayed())
    browser.execute_script(
        "const p = document.getElementById('live-player'); window.heardWhile = [];"
        "p.addEventListener('timeupdate', () => {"
        "  if (p.currentTime > 0) window.heardWhile.push(document.body.dataset.state); });"
        "p.play();")
    wait.until(lambda d: _state(d) in ("done", "failed"))
    assert _state(browser) == "done", browser.find_element(By.ID, "error").text
    heard = browser.execute_script("return window.heardWhile")
    error = browser.execute_script("const e = document.getElementById('live-player').error; return e && e.code")
    assert error is None and "running" in heard, (error, sorted(set(heard)))
    # still playing after the job is done: the player stays
    assert browser.find_element(By.ID, "live").is_displayed()
