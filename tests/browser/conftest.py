"""A real `bentoml serve` and Debian's Chromium (headless, selenium + chromedriver) with a
fake microphone playing a spoken query made by the project's own synthesis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from bench.browser import BROWSER_FLAGS, CHROMEDRIVER, CHROMIUM, missing_browser
from bench.harness import REPO, Server, start_server, stop_server
from tests.service.conftest import METADATA, MODEL_NAME, StoredModel

__all__ = ["BROWSER_FLAGS", "CHROMEDRIVER", "CHROMIUM", "missing_browser"]
QUERY = "weather in paris"


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


IMPORT_MODEL = """
import json, sys
from pathlib import Path
from tests.service.conftest import save_random_recognizer
from tasks.packaging import import_recognizer
directory = save_random_recognizer(Path(sys.argv[1]))
print(import_recognizer(directory, sys.argv[2], json.loads(sys.argv[3]), {"stage": "test"}))
"""


@pytest.fixture(scope="session")
def page_model(tmp_path_factory: pytest.TempPathFactory) -> StoredModel:
    """A random-init recogniser in a BentoML home of its own, imported by a child process:
    this process's BentoML home belongs to the service tests (tests/service/conftest.py),
    which refuse a home resolved before theirs."""
    home = tmp_path_factory.mktemp("page-bentoml-home")
    directory = tmp_path_factory.mktemp("page-recognizer")
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True"}
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_MODEL, str(directory), MODEL_NAME, json.dumps(METADATA)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return StoredModel(home, done.stdout.strip().splitlines()[-1], directory)


@pytest.fixture(scope="module")
def server(page_model: StoredModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(page_model, tmp_path_factory.mktemp("page-server"))
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
