"""Debian's Chromium, headless, driven by selenium and Debian's chromedriver (no browser
download), and an `evidently ui` over a workspace: what the browser tests and
bench/dashboard_screenshot.py share (tests are not a library, so it lives here)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
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


def missing_browser() -> str | None:
    """Why the browser cannot run here (None: it can)."""
    if CHROMIUM is None:
        return "Debian's chromium is not installed (apt-get install chromium)"
    if CHROMEDRIVER is None:
        return "chromedriver is not installed (apt-get install chromium-driver)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def headless_chromium(profile_dir: Path, window: str = "1400,1800") -> Iterator[Any]:
    """A headless Chromium (no fake microphone) with a fresh profile, quit on exit."""
    reason = missing_browser()
    if reason:
        raise RuntimeError(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in BROWSER_FLAGS:
        if not flag.startswith(("--window-size", "--use-fake")):
            options.add_argument(flag)
    options.add_argument(f"--window-size={window}")
    options.add_argument(f"--user-data-dir={profile_dir / 'chromium-profile'}")
    log = str(profile_dir / "driver.log")
    driver = webdriver.Chrome(
        options=options, service=Service(executable_path=str(CHROMEDRIVER), log_output=log)
    )
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@contextmanager
def evidently_ui(
    workspace_dir: Path, log_path: Path, project_name: str
) -> Iterator[tuple[str, str]]:
    """`evidently ui` on a free 127.0.0.1 port over `workspace_dir`, stopped on exit (and
    waited for); its URL and the id of project `project_name`."""
    from deployments.local import evidently_ui_command

    port = free_port()
    with log_path.open("wb") as out:
        process = subprocess.Popen(
            evidently_ui_command(workspace_dir, port), stdout=out, stderr=subprocess.STDOUT
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
        if projects is None:
            raise RuntimeError(f"evidently ui did not answer: {log_path.read_text()[-2000:]}")
        found = [p["id"] for p in projects if p["name"] == project_name]
        if not found:
            raise RuntimeError(f"no project {project_name!r} in {workspace_dir}")
        yield url, found[0]
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


def drawn_panels(driver: Any, expected: dict[str, int], timeout_s: float = 90.0) -> dict:
    """Each panel's points once the JS app has drawn every panel with the `expected` number
    of points and the charts' animation has settled (the same positions twice in a row)."""
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
    raise TimeoutError(f"dashboard not drawn after {timeout_s:g} s: {last!r}; page text: {body!r}")
