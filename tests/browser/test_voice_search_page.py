"""The voice-search page in a real browser: record from a (fake) microphone, see the answer."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import soundfile as sf

from bench.harness import Server
from tests.browser.conftest import QUERY

pytestmark = pytest.mark.slow

SHOTS = Path("/tmp/metrics")  # where the lead looks for the screenshots


def wait_visible(driver: Any, *ids: str, timeout_s: float = 60.0) -> str:
    """The first of the elements `ids` to be shown."""
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for element_id in ids:
            if driver.find_element(By.ID, element_id).is_displayed():
                return element_id
        time.sleep(0.2)
    status = driver.find_element(By.ID, "status").text
    pytest.fail(f"none of {ids} shown after {timeout_s:.0f} s (status: {status!r})")


def text(driver: Any, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.ID, element_id).text)


def screenshot(driver: Any, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    driver.save_screenshot(str(path))
    try:
        SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, SHOTS / name)
    except OSError:
        pass  # a copy for people; the test's own is under tmp_path
    return path


def test_the_page_records_sends_and_shows_the_transcript(
    server: Server, browser: Callable[[], Any], spoken_query: Path, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    driver = browser()
    driver.get(server.url + "/")
    assert driver.title.startswith("voicecycle")
    driver.find_element(By.ID, "consent").click()
    driver.find_element(By.ID, "record").click()
    seconds = sf.info(str(spoken_query)).duration
    wait_visible(driver, "stop", timeout_s=10)
    time.sleep(seconds + 0.5)  # the fake microphone plays the query (looped)
    driver.find_element(By.ID, "stop").click()
    shown = wait_visible(driver, "result", "error")
    shot = screenshot(driver, tmp_path, "page.png")
    assert shown == "result", f"the page showed an error: {text(driver, 'error')}"
    assert shot.stat().st_size > 0

    request_id = text(driver, "request-id")
    row = server.logged().set_index("request_id").loc[request_id]
    # what the page shows is what the service answered and logged for this recording
    assert text(driver, "model-version") == str(row["model_version"]) == "1"
    assert text(driver, "transcript") == (row["transcript"] or "(nothing recognised)")
    assert float(text(driver, "confidence")) == pytest.approx(row["confidence"], abs=0.006)
    assert text(driver, "latency").endswith(" ms")
    # the recording is the microphone's speech, sent as 16 kHz mono with the consent box
    assert bool(row["consent"]) and row["audio_path"]
    kept, rate = sf.read(row["audio_path"])
    assert rate == 16000 and kept.ndim == 1
    assert row["duration_s"] == pytest.approx(seconds + 0.5, abs=1.0)
    assert row["rms_dbfs"] > -45.0, f"the recording is near silence: {row['rms_dbfs']} dBFS"
    assert QUERY  # the query spoken; a random-init test model does not transcribe it


def test_bad_audio_from_the_page_gets_the_clear_error(
    server: Server, browser: Callable[[], Any], tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    not_audio = tmp_path / "notes.wav"
    not_audio.write_bytes(b"these are my shopping notes, not a recording\n" * 20)
    driver = browser()
    driver.get(server.url + "/")
    driver.find_element(By.ID, "file").send_keys(str(not_audio))
    assert wait_visible(driver, "error", "result") == "error"
    screenshot(driver, tmp_path, "page-error.png")
    message = text(driver, "error")
    assert "not audio the service can read" in message
    assert "415 undecodable_audio" in message


def test_the_api_docs_moved_to_docs(server: Server) -> None:
    page = httpx.get(server.url + "/")
    assert page.status_code == 200 and 'id="record"' in page.text
    docs = httpx.get(server.url + "/docs")
    assert docs.status_code == 200 and "swagger-ui" in docs.text
    assert httpx.get(server.url + "/static_content/swagger-ui.css").status_code == 200
    spec = httpx.get(server.url + "/docs.json").json()
    assert "ErrorBody" in spec["components"]["schemas"] and "/transcribe" in spec["paths"]
    assert httpx.get(server.url + "/ui/page.js").status_code == 200
