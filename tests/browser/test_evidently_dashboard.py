"""Evidently's UI in a real browser: a real `evidently ui` over a workspace where drift rose
and fell over six checks (a retrain in between), opened in headless Debian Chromium; the
project's dashboard must draw every panel with its points before the screenshot is taken."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bench.browser import missing_browser
from bench.dashboard_screenshot import main, screenshot
from tasks.dashboard import FIGURES, CheckFigures, add_snapshot
from tests.browser.test_voice_search_page import SHOTS

pytestmark = pytest.mark.slow

SHARES = [0.05, 0.1, 0.5, 0.72, 0.2, 0.08]  # drift rises with the new names, falls after
PEAK = SHARES.index(max(SHARES))
LABELLED = {3: 0.6, 5: 0.2}  # labels came in at the peak, and for the retrained version


@pytest.fixture
def checks(tmp_path: Path) -> Path:
    """An Evidently workspace of six drift checks."""
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
    return workspace


def test_the_dashboard_shows_drift_rising_and_falling(checks: Path, tmp_path: Path) -> None:
    """Through bench/dashboard_screenshot.py: its own evidently ui, headless Chromium, the
    panels drawn with a point per snapshot (labelled WER only where labels exist)."""
    reason = missing_browser()
    if reason:
        pytest.skip(reason)
    shot = tmp_path / "evidently-dashboard.png"
    try:
        shown, panels = screenshot(checks, shot)
    except TimeoutError as exc:
        pytest.fail(str(exc))
    keep_for_people(shot)
    assert shown["drift_share"].tolist() == SHARES
    assert set(panels) == {title for title, _ in FIGURES.values()}
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


def keep_for_people(shot: Path) -> None:
    """A copy where the lead looks for screenshots; the test's own stays under tmp_path."""
    try:
        SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, SHOTS / shot.name)
    except OSError:
        pass


def test_the_screenshot_command_says_when_there_is_nothing_to_show(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scope_file = tmp_path / "scope.yaml"
    scope_file.write_text(f"state:\n  workspace: {tmp_path / 'ws'}\n")
    assert main(["--scope", str(scope_file), "--out", str(tmp_path / "x.png")]) == 1
    err = capsys.readouterr().err
    assert "no Evidently workspace at" in err and str(tmp_path / "ws" / "evidently") in err
    assert not (tmp_path / "x.png").exists()
