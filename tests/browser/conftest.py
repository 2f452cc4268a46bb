"""A real `bentoml serve` and Debian's Chromium (headless, selenium + chromedriver) with a
fake microphone playing a spoken query made by the project's own synthesis."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from tests.service.conftest import StoredModel, save_random_recognizer, stored_model, valid_wav
from tests.service.test_real_server import Server, start_server, stop_server

__all__ = ["save_random_recognizer", "stored_model", "valid_wav"]  # the service fixtures

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
QUERY = "weather in paris"
BROWSER_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--window-size=900,1000",
)


def missing_browser() -> str | None:
    """Why the browser tests cannot run here (None: they can)."""
    if CHROMIUM is None:
        return "Debian's chromium is not installed (apt-get install chromium)"
    if CHROMEDRIVER is None:
        return "chromedriver is not installed (apt-get install chromium-driver)"
    return None


@pytest.fixture(scope="session")
def spoken_query(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`QUERY` spoken by the first catalogue voice, as the recorded queries of the corpus are
    (tasks/synthesis/dsp.py), written as 16-bit 48 kHz mono WAV (a microphone's rate)."""
    from tasks.synthesis.dsp import render_utterance
    from tasks.synthesis.voices import list_voices

    [voice] = list_voices(seed=0, n=1)
    audio = render_utterance(QUERY, voice, 48000, np.random.default_rng(0))
    path = tmp_path_factory.mktemp("fake-mic") / "query.wav"
    sf.write(path, audio, 48000, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def server(stored_model: StoredModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(stored_model, tmp_path_factory.mktemp("page-server"))
    try:
        yield running
    finally:
        stop_server(running)


@pytest.fixture
def browser(spoken_query: Path, tmp_path: Path) -> Iterator[Callable[[], Any]]:
    """A headless Chromium whose microphone plays `spoken_query` (fresh profile per test)."""
    reason = missing_browser()
    if reason:
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    drivers: list[Any] = []

    def launch() -> Any:
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in BROWSER_FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--use-file-for-fake-audio-capture={spoken_query}")
        options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
        service = Service(
            executable_path=str(CHROMEDRIVER), log_output=str(tmp_path / "driver.log")
        )
        driver = webdriver.Chrome(options=options, service=service)
        driver.set_page_load_timeout(30)
        drivers.append(driver)
        return driver

    yield launch
    for driver in drivers:
        driver.quit()
