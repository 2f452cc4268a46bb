"""The Evidently UI project: one snapshot per drift check, a dashboard over time."""

from __future__ import annotations

import math
import socket
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pandas as pd
import pytest

from tasks.dashboard import FIGURES, PROJECT, CheckFigures, check_frame, open_project, record_check
from tasks.drift import DriftResult

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def add_two_checks(workspace_dir: Path) -> None:
    stable = pd.DataFrame({"confidence": [0.9, 0.8], "transcript": ["weather in paris", ""]})
    shifted = pd.DataFrame({"confidence": [0.4, 0.5], "transcript": ["zelenskyy news", "paris"]})
    lexicon = {"weather", "in", "paris", "news"}
    calm = DriftResult(0.0, (), 100, 2, {}, None)
    drifted = DriftResult(0.6, tuple(f"f{i}" for i in range(6)), 100, 2, {}, None)
    too_few = DriftResult(0.0, (), 100, 2, {}, None, evaluated=False)
    assert record_check.fn(workspace_dir, too_few, "1", stable, lexicon) is None
    record_check.fn(workspace_dir, calm, "1", stable, lexicon, when=START)
    later = START + timedelta(minutes=15)
    record_check.fn(workspace_dir, drifted, "2", shifted, lexicon, 0.25, when=later)


def mean_values(snapshot: object) -> dict[str, float]:
    """column -> MeanValue of one stored snapshot."""
    out = {}
    for result in snapshot.metric_results.values():  # type: ignore[attr-defined]
        params = result.metric_value_location.metric.params
        assert params["type"].endswith("MeanValue")
        out[params["column"]] = float(result.value)
    return out


def test_two_checks_make_a_project_with_a_dashboard_and_two_snapshots(tmp_path: Path) -> None:
    add_two_checks(tmp_path / "evidently")

    workspace, project = open_project(tmp_path / "evidently")  # found again, not made twice
    assert [p.name for p in workspace.list_projects()] == [PROJECT]
    dashboard = project.dashboard.model()
    assert {panel.title for panel in dashboard.panels} == {t for t, _ in FIGURES.values()}
    assert [tab.title for tab in dashboard.tabs] == ["Monitoring"]
    columns = {p.values[0].metric_labels["column"] for p in dashboard.panels}
    assert columns == set(FIGURES)

    refs = workspace.list_runs(project.id)
    assert len(refs) == 2
    snapshots = sorted((workspace.get_run(project.id, r) for r in refs), key=lambda s: s.timestamp)
    first, second = (mean_values(s) for s in snapshots)
    assert first["drift_share"] == 0.0 and second["drift_share"] == 0.6
    assert second["drifted_features"] == 6 and second["model_version"] == 2.0
    assert first["mean_confidence"] == pytest.approx(0.85)
    assert second["oov_share"] == pytest.approx(0.25)  # "zelenskyy" of 2 + 0 of 1, halved
    assert "labelled_wer" not in first and second["labelled_wer"] == 0.25  # labels only then


def test_a_version_that_is_not_a_number_is_kept_as_a_tag_only() -> None:
    figures = CheckFigures(START, "champion-a", 0.1, 1, 0.5, 0.0)
    frame = check_frame(figures)
    assert math.isnan(frame["model_version"].iloc[0]) and math.isnan(frame["labelled_wer"].iloc[0])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_evidently_ui_serves_the_project(tmp_path: Path) -> None:
    from deployments.local import evidently_ui_command

    add_two_checks(tmp_path / "evidently")
    port = free_port()
    log = tmp_path / "ui.log"
    cmd = evidently_ui_command(tmp_path / "evidently", port)
    assert cmd[1] == "ui" and cmd[cmd.index("--host") + 1] == "127.0.0.1"
    with log.open("wb") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        projects = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                projects = httpx.get(f"{url}/api/projects", timeout=2).json()
                break
            except httpx.HTTPError:
                time.sleep(0.5)
        assert projects is not None, log.read_text()[-2000:]
        [project] = [p for p in projects if p["name"] == PROJECT]
        runs = httpx.get(f"{url}/api/projects/{project['id']}/snapshots", timeout=10)
        assert runs.status_code == 200 and len(runs.json()) == 2
        assert httpx.get(url, timeout=10).status_code == 200  # the UI itself
    finally:
        process.terminate()
        process.wait(timeout=15)
