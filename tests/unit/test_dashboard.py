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

from data_contracts.prediction_store import PredictionStore
from tasks.dashboard import (
    FIGURES,
    PROJECT,
    CheckFigures,
    check_frame,
    labelled_production_wer,
    labelled_wer,
    open_project,
    read_checks,
    record_check,
)
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


def test_the_checks_read_back_oldest_first_with_their_figures(tmp_path: Path) -> None:
    add_two_checks(tmp_path / "evidently")
    checks = read_checks(tmp_path / "evidently")
    assert checks["version"].tolist() == ["1", "2"]
    assert checks["drift_share"].tolist() == [0.0, 0.6]
    assert math.isnan(checks["labelled_wer"].iloc[0]) and checks["labelled_wer"].iloc[1] == 0.25
    assert checks["when"].iloc[1] - checks["when"].iloc[0] == timedelta(minutes=15)


def test_a_version_that_is_not_a_number_is_kept_as_a_tag_only() -> None:
    figures = CheckFigures(START, "champion-a", 0.1, 1, 0.5, 0.0)
    frame = check_frame(figures)
    assert math.isnan(frame["model_version"].iloc[0]) and math.isnan(frame["labelled_wer"].iloc[0])


def test_labelled_wer_scores_the_serving_versions_transcripts_on_labelled_requests() -> None:
    labels = pd.DataFrame(
        {"request_id": ["a", "b", "c"], "label": ["Call Mom", "play 2 songs", "x"]}
    )
    logged = pd.DataFrame(
        {
            "request_id": ["a", "b", "c", "d"],
            "model_version": ["1", "1", "2", "1"],
            "transcript": ["call mom", "play to songs", "x", "unlabelled"],
        }
    )
    # v1: "call mom" right, "play two songs" with one word wrong: 1 error in 5 words
    assert labelled_wer(labels, logged, "1") == pytest.approx(0.2)
    assert labelled_wer(labels, logged, "2") == 0.0
    assert labelled_wer(labels, logged, "3") is None  # no labelled prediction of v3


def logged_row(request_id: str, version: str, transcript: str) -> dict[str, object]:
    return {
        "request_id": request_id,
        "model_version": version,
        "model_tag": f"asr:{version}",
        "transcript": transcript,
        "confidence": 0.5,
        "latency_ms": 10.0,
        "duration_s": 1.0,
        "rms_dbfs": -20.0,
        "peak_dbfs": -3.0,
        "clipping_share": 0.0,
        "silence_share": 0.1,
        "snr_db_estimate": 20.0,
        "spectral_centroid_hz": 1500.0,
        "spectral_bandwidth_hz": 1000.0,
        "spectral_rolloff_hz": 3000.0,
        "low_band_share": 0.2,
        "n_words": len(transcript.split()),
        "client": "{}",
        "consent": True,
        "audio_path": None,
    }


def test_labelled_production_wer_joins_imported_labels_to_the_prediction_log(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    store = PredictionStore(url)
    for rid, text in [("r0", "who is zelda"), ("r1", "call mom"), ("r2", "weather")]:
        store.append(logged_row(rid, "4", text))
    store.close()
    labelling = tmp_path / "labelling"
    assert labelled_production_wer.fn(labelling, url, "4") is None  # no labels yet
    batch = labelling / "batch-20260301T120000000000"
    batch.mkdir(parents=True)
    columns = "utterance_id,transcript\n"
    (batch / "labels-000.csv").write_text(columns + "r0,who is zelenskyy\n")
    (batch / "labels-001.csv").write_text(columns + "r1,call mom\nr9,not logged\n")
    # 1 wrong word of 5 labelled words (r2 has no label, r9 was never logged)
    assert labelled_production_wer.fn(labelling, url, "4") == pytest.approx(0.2)
    assert labelled_production_wer.fn(labelling, url, "5") is None


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
