"""Evidently's UI in a real browser: a real `evidently ui` over a workspace where drift rose
and fell over six checks (a retrain in between), opened in headless Debian Chromium; the
project's dashboard must draw every panel with its points before the screenshot is taken."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bench.browser import drawn_panels as wait_drawn
from bench.browser import evidently_ui as running_ui
from bench.browser import headless_chromium, missing_browser
from tasks.dashboard import FIGURES, PROJECT, CheckFigures, add_snapshot
from tests.browser.test_voice_search_page import screenshot

pytestmark = pytest.mark.slow

SHARES = [0.05, 0.1, 0.5, 0.72, 0.2, 0.08]  # drift rises with the new names, falls after
PEAK = SHARES.index(max(SHARES))
LABELLED = {3: 0.6, 5: 0.2}  # labels came in at the peak, and for the retrained version


@pytest.fixture
def evidently_ui(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """`evidently ui` on a workspace of six drift checks; its URL and the project's id."""
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
    with running_ui(workspace, tmp_path / "ui.log", PROJECT) as (url, project):
        yield url, project


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[Any]:
    reason = missing_browser()
    if reason:
        pytest.skip(reason)
    with headless_chromium(tmp_path) as driver:  # the six panels, two a row
        yield driver


def drawn_panels(driver: Any, expected: dict[str, int], timeout_s: float = 90.0) -> dict:
    """Each panel's points once drawn and settled (bench/browser.py), or the test fails."""
    try:
        return wait_drawn(driver, expected, timeout_s)
    except TimeoutError as exc:
        pytest.fail(str(exc))


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
