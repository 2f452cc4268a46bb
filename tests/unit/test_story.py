"""The story's bookkeeping: false alarms in stable windows, the detection point, the figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data_contracts.scoping import Scope
from tasks.story import (
    StoryTally,
    newsroom_scope,
    story_figures,
    tally_shifted,
    tally_stable,
    write_story_results,
)


def _check(drift: bool, retrain: bool, share: float, run: str | None = None) -> dict[str, object]:
    return {"drift": drift, "retrain": retrain, "drift_share": share, "retrain_flow_run": run}


def test_stable_windows_count_false_alarms_and_the_largest_share() -> None:
    tally = StoryTally()
    for check in (_check(False, False, 0.1), _check(True, False, 0.4), _check(False, False, 0.2)):
        tally = tally_stable(tally, check)
    assert (tally.windows, tally.false_alarms, tally.max_drift_share) == (3, 1, 0.4)
    assert tally.detection is None and tally.retrain_flow_run is None


def test_shifted_traffic_records_where_monitoring_started_the_retrain() -> None:
    tally = tally_shifted(StoryTally(windows=2), _check(True, False, 0.3), 100)
    assert tally.shifted == 100 and tally.detection is None  # drift, but cooling down
    tally = tally_shifted(tally, _check(True, True, 0.6, "run-1"), 100)
    assert (tally.shifted, tally.detection, tally.drift_share_at_detection) == (200, 200, 0.6)
    assert tally.retrain_flow_run == "run-1" and tally.windows == 2


def test_figures_and_results_files(tmp_path: Path) -> None:
    tally = StoryTally(10, 0, 0.21, 300, 300, 0.55, "run-1")
    wers = {
        "wer_new_names_before": 0.5,
        "wer_new_names_after": 0.1,
        "wer_launch_names_before": 0.05,
        "wer_launch_names_after": 0.05,
    }
    figures = story_figures.fn(
        tally, True, "Completed", "1", "2", True, wers, 12.34, "http://127.0.0.1:3000"
    )
    assert figures["retrain_triggered"] is True and figures["requests_to_detection"] == 300
    assert figures["new_over_launch_after"] == 2.0 and figures["story_seconds"] == 12.3
    story_json, monitor_json = write_story_results.fn(tmp_path, figures, 1.5, 400)
    assert story_json == tmp_path / "story.json"
    assert json.loads(story_json.read_text())["champion_after"] == "2"
    monitor = json.loads(monitor_json.read_text())
    assert monitor["drift_check_seconds_10k"] == 1.5 and monitor["window"] == 400


def test_the_newsroom_list_becomes_the_retrains_hot_word_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    scope = Scope()
    listed = newsroom_scope.fn(scope, Path("story") / "newsroom.txt", ["Zarina Okonkwo", "Léa"])
    path = listed.training.hot_words_file
    assert path is not None and path.is_absolute()
    assert path.read_text().splitlines() == ["zarina okonkwo", "lea"]
    assert listed.sources == scope.sources  # only training changes
