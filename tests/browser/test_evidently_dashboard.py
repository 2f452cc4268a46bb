"""Evidently's UI in a real browser: a real `evidently ui` over a workspace where drift rose
and fell over six checks (a retrain in between), opened in headless Debian Chromium; the
project's dashboard must draw every panel with its points before the screenshot is taken."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tasks.dashboard import FIGURES, PROJECT, CheckFigures, add_snapshot
from tests.browser.conftest import BROWSER_FLAGS, CHROMEDRIVER, CHROMIUM, missing_browser
from tests.browser.test_voice_search_page import screenshot

pytestmark = pytest.mark.slow

SHARES = [0.05, 0.1, 0.5, 0.72, 0.2, 0.08]  # drift rises with the new names, falls after
PEAK = SHARES.index(max(SHARES))
LABELLED = {3: 0.6, 5: 0.2}  # labels came in at the peak, and for the retrained version

# per panel (its title): the centres of the chart's points, left to right
PANEL_POINTS = """
const panels = {};
for (const svg of document.querySelectorAll('svg')) {
  const marks = svg.querySelectorAll('circle[class*="MuiMarkElement"]');
  const card = svg.closest('[class*="MuiCard"], [class*="MuiPaper"]');
  if (!marks.length || !card) continue;
  const title = card.innerText.split('\\n')[0].trim();
  panels[title] = Array.from(marks)
    .map(m => [parseFloat(m.getAttribute('cx')), parseFloat(m.getAttribute('cy'))])
    .sort((a, b) => a[0] - b[0]);
}
return JSON.stringify(panels);
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def evidently_ui(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """`evidently ui` on a workspace of six drift checks; its URL and the project's id."""
    from deployments.local import evidently_ui_command

    workspace = tmp_path / "evidently"
    start = datetime.now(UTC) - timedelta(minutes=15 * len(SHARES))
    for i, share in enumerate(SHARES):
        figures = CheckFigures(
            when=start + timedelta(minutes=15 * i),
            model_version="1" if i < 5 else "2",
            drift_share=share,
            drifted_features=round(share * 10),
            mean_confidence=0.85 - share / 2,
            oov_share=share / 3,
            labelled_wer=LABELLED.get(i),
        )
        add_snapshot(workspace, figures)
    port = free_port()
    log = tmp_path / "ui.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            evidently_ui_command(workspace, port), stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        projects = None
        while projects is None and time.monotonic() < deadline and process.poll() is None:
            try:
                projects = httpx.get(f"{url}/api/projects", timeout=2).json()
            except httpx.HTTPError:
                time.sleep(0.5)
        assert projects is not None, log.read_text()[-2000:]
        [project] = [p["id"] for p in projects if p["name"] == PROJECT]
        yield url, project
    finally:
        process.terminate()
        process.wait(timeout=15)


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[Any]:
    reason = missing_browser()
    if reason:
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in BROWSER_FLAGS:
        if not flag.startswith(("--window-size", "--use-fake")):
            options.add_argument(flag)
    options.add_argument("--window-size=1400,1800")  # the six panels, two a row
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(tmp_path / "driver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def drawn_panels(driver: Any, expected: dict[str, int], timeout_s: float = 90.0) -> dict:
    """Each panel's points once the JS app has drawn every panel with its points and the
    charts' animation has settled (the same positions twice in a row)."""
    deadline = time.monotonic() + timeout_s
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        panels = json.loads(driver.execute_script(PANEL_POINTS))
        counts = {title: len(points) for title, points in panels.items()}
        if counts == expected and panels == last:
            return panels
        last = panels
        time.sleep(1)
    body = driver.find_element("tag name", "body").text[:1500]
    pytest.fail(f"dashboard not drawn after {timeout_s:g} s: {last!r}; page text: {body!r}")


def test_the_dashboard_shows_drift_rising_and_falling(
    evidently_ui: tuple[str, str], chromium: Any, tmp_path: Path
) -> None:
    url, project = evidently_ui
    chromium.get(f"{url}/projects/{project}")
    expected = {title: len(SHARES) for title, _ in FIGURES.values()}
    expected[FIGURES["labelled_wer"][0]] = len(LABELLED)  # points only where labels exist

    panels = drawn_panels(chromium, expected)

    shot = screenshot(chromium, tmp_path, "evidently-dashboard.png")
    assert shot.stat().st_size > 20_000  # a drawn page, not a blank one
    heights = [-cy for _, cy in panels[FIGURES["drift_share"][0]]]  # SVG y grows downwards
    assert heights.index(max(heights)) == PEAK
    assert heights[0] < heights[PEAK - 1] < heights[PEAK] and heights[-1] < heights[PEAK + 1]
    confidence = [-cy for _, cy in panels[FIGURES["mean_confidence"][0]]]
    assert confidence.index(min(confidence)) == PEAK  # the shift is also less confident
    version = [-cy for _, cy in panels[FIGURES["model_version"][0]]]
    assert version[-1] > version[0]  # the retrained model serves at the end
    wer = [-cy for _, cy in panels[FIGURES["labelled_wer"][0]]]
    assert wer[0] > wer[1]  # the new version's labelled WER is lower
