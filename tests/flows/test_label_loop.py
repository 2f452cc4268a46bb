"""The loop at flow level, on a real Prefect server: drift opens a labelling batch, labels
come back (a Label Studio JSON export), the import starts the retrain deployment, a label that
arrives later waits for the next retrain, and the next monitoring run puts the serving
version's WER on the labelled samples on the Evidently dashboard."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from data_contracts.scoping import Scope
from tests.champions import register_champion
from tests.conftest import tiny_scope

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_server")]

LAUNCH = ["play jazz music", "call mom", "weather in paris"]
FEATURES = {  # name -> (launch mean, production mean, spread): production is quieter, in cars
    "duration_s": (2.0, 2.0, 0.3),
    "rms_dbfs": (-20.0, -32.0, 2.0),
    "snr_db_estimate": (30.0, 6.0, 3.0),
    "spectral_centroid_hz": (1500.0, 700.0, 100.0),
    "spectral_bandwidth_hz": (1200.0, 600.0, 100.0),
    "spectral_rolloff_hz": (3000.0, 1400.0, 200.0),
    "low_band_share": (0.2, 0.7, 0.03),
    "silence_share": (0.2, 0.2, 0.03),
}


def features(rng: np.random.Generator, production: bool) -> dict[str, float]:
    values = {k: rng.normal(p if production else m, s) for k, (m, p, s) in FEATURES.items()}
    for share in ("low_band_share", "silence_share"):
        values[share] = float(np.clip(values[share], 0.0, 1.0))
    return values


def launch_champion(scope: Scope, tmp_path: Path) -> str:
    """A small recogniser promoted to champion, its run holding a drift reference of launch
    traffic (what the train flow's error analysis logs); its version."""
    rng = np.random.default_rng(1)
    rows = []
    for i in range(80):
        text = LAUNCH[i % 3]
        confidence = float(rng.uniform(0.75, 0.95))
        rows.append({**features(rng, False), "confidence": confidence, "transcript": text})
    reference = pd.DataFrame(rows)
    reference["n_words"] = reference["transcript"].str.split().str.len()
    reference["condition"] = "clean"
    (tmp_path / "error_analysis").mkdir()
    reference.to_csv(tmp_path / "error_analysis" / "drift_reference.csv", index=False)
    return register_champion(
        scope, tmp_path / "rec", LAUNCH, artifacts={"error_analysis": tmp_path / "error_analysis"}
    )


def log_production(scope: Scope, version: str, n: int, first: int = 0) -> dict[str, str]:
    """`n` answered requests after the shift (new names, from cars) in the prediction log,
    with their consented audio, as the service writes them; request id -> transcript."""
    from data_contracts.prediction_store import PredictionStore

    audio_dir = scope.state.workspace / "prediction_audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2)
    store = PredictionStore(scope.state.url("prediction_log_url"))
    said = {}
    try:
        for i in range(first, first + n):
            rid = f"req-{i:03d}"
            transcript = ["who is zelda", "call mom", "news about kolawole"][i % 3]
            path = audio_dir / f"{rid}.wav"
            sf.write(path, np.zeros(1600, dtype=np.float32), 16000)
            store.append(
                {
                    **features(rng, True),
                    "request_id": rid,
                    "model_version": version,
                    "model_tag": f"asr:{version}",
                    "transcript": transcript,
                    "confidence": float(rng.uniform(0.2, 0.5)),
                    "latency_ms": 20.0,
                    "peak_dbfs": -6.0,
                    "clipping_share": 0.0,
                    "n_words": len(transcript.split()),
                    "client": '{"app": "test/1"}',
                    "consent": True,
                    "audio_path": str(path),
                }
            )
            said[rid] = transcript
    finally:
        store.close()
    return said


def export_of(tasks: list[dict[str, Any]], truth: dict[str, str]) -> list[dict[str, Any]]:
    """What Label Studio's JSON export holds once a person typed `truth` into these tasks."""
    from data_contracts.labels import transcription_result

    return [
        {
            **task,
            "id": i,
            "annotations": [
                {"id": i, "result": transcription_result(truth[task["data"]["request_id"]])}
            ],
        }
        for i, task in enumerate(tasks)
    ]


def labelled_wer_points(workspace_dir: Path) -> list[float | None]:
    """The labelled-WER value of each snapshot of the Evidently project, oldest first."""
    from tasks.dashboard import open_project

    workspace, project = open_project(workspace_dir)
    snapshots = sorted(
        (workspace.get_run(project.id, r) for r in workspace.list_runs(project.id)),
        key=lambda s: s.timestamp,
    )
    points: list[float | None] = []
    for snapshot in snapshots:
        values = {
            r.metric_value_location.metric.params["column"]: float(r.value)
            for r in snapshot.metric_results.values()
        }
        points.append(values.get("labelled_wer"))
    return points


def labelling_events(batch_id: str, timeout_s: float = 30.0) -> list[Any]:
    """The `voicecycle.labelling.opened` events the Prefect server holds for this batch (the
    client sends events in the background: wait for them to land)."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter

    from tasks.monitoring import LABELLING_EVENT

    deadline = time.monotonic() + timeout_s
    found: list[Any] = []
    while not found and time.monotonic() < deadline:
        with get_client(sync_client=True) as client:
            wanted = EventFilter(event=EventNameFilter(name=[LABELLING_EVENT]))
            page = client.read_events(wanted, limit=50)  # the server's cap (the default: 100)
        found = [e for e in page.events if e.payload.get("batch") == batch_id]
        if not found:
            time.sleep(1)
    return found


def test_drift_opens_a_batch_and_the_labels_start_the_retrain(tmp_path: Path) -> None:
    from prefect import Flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from deployments.local import REPO_ROOT, WORK_POOL
    from deployments.work_pool import ensure_work_pool
    from flows.label import label_export, label_import, label_status
    from flows.monitor import monitor
    from tasks.evaluation.metrics import wer

    ensure_work_pool()
    flow: Any = Flow.from_source(source=str(REPO_ROOT), entrypoint="flows/retrain.py:retrain")
    deployment_id = flow.deploy(
        name="retrain", work_pool_name=WORK_POOL, print_next_steps=False, ignore_warnings=True
    )
    scope = tiny_scope(tmp_path / "workspace")
    scope = scope.model_copy(
        update={
            "monitoring": scope.monitoring.model_copy(update={"window": 30, "min_window": 20}),
            "labelling": scope.labelling.model_copy(update={"min_labels": 5}),
        }
    )
    version = launch_champion(scope, tmp_path)
    said = log_production(scope, version, 30)

    first = monitor(scope)

    assert first["drift"] and first["labelling_batch"] is not None, first["reason"]
    assert not first["retrain"] and first["pending_labels"] == 0  # nobody labelled yet
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["labelling-batch"]))
        )
    assert any(first["labelling_batch"] in str(a.data) for a in artifacts)
    [event] = labelling_events(str(first["labelling_batch"]))
    assert event.payload["tasks"] == 30 and event.payload["link"].endswith("tasks.json")
    batch = scope.state.path("labelling_dir") / str(first["labelling_batch"])
    tasks = json.loads((batch / "tasks.json").read_text())
    assert len(tasks) == 30

    # a person labels six clips (what the speakers really said) and exports from Label Studio
    truth = {t["data"]["request_id"]: "who is zelenskyy" for t in tasks}
    export = tmp_path / "export.json"
    export.write_text(json.dumps(export_of(tasks[:6], truth)))
    done = label_import(scope, export)

    assert done["labelled"] == 6 and done["retrain"], done["labels_reason"]
    assert "min_labels" in str(done["labels_reason"])
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(done["retrain_flow_run"])  # type: ignore[arg-type]
    assert run.deployment_id == deployment_id
    assert str(run.parameters["reason"]).startswith("labels in: 6 new labels")
    assert label_status(scope)["pending_labels"] == 0  # the retrain took them

    # two more arrive after the retrain started: they wait for the next one
    export.write_text(json.dumps(export_of(tasks[6:8], truth)))
    late = label_import(scope, export)
    assert late["labelled"] == 2 and not late["retrain"] and late["pending_labels"] == 2

    second = monitor(scope)

    assert second["labelling_batch"] is None  # one shift opens one batch (the cooldown)
    assert not second["retrain"] and second["pending_labels"] == 2
    labelled = [t["data"]["request_id"] for t in tasks[:8]]
    expected = wer([truth[r] for r in labelled], [said[r] for r in labelled])
    assert expected > 0
    points = labelled_wer_points(scope.state.path("evidently_workspace"))
    assert points[0] is None and points[-1] == pytest.approx(expected)
    assert second["model_version"] == version
    assert second["labelled_wer"] == pytest.approx(expected)

    # an operator opens a batch of newer traffic by hand (as the story does after a switch,
    # to check the new champion); its labels come in without starting a retrain
    later = log_production(scope, version, 30, first=30)
    opened = label_export(scope, reason="checking the champion")
    assert opened["batch"] is not None and opened["tasks"] == 30
    checked = json.loads(
        (scope.state.path("labelling_dir") / str(opened["batch"]) / "tasks.json").read_text()
    )
    assert {t["data"]["request_id"] for t in checked} == set(later)  # none labelled twice
    truth |= {rid: "who is zelenskyy" for rid in later}
    export.write_text(json.dumps(export_of(checked[:5], truth)))
    quiet = label_import(scope, export, trigger=False)
    assert quiet["labelled"] == 5 and quiet["labels_ready"] and not quiet["retrain"]
    third = monitor(scope, trigger=False)
    assert not third["retrain"] and third["pending_labels"] == 7  # for the next retrain
    labelled += [t["data"]["request_id"] for t in checked[:5]]
    said |= later
    expected = wer([truth[r] for r in labelled], [said[r] for r in labelled])
    assert third["labelled_wer"] == pytest.approx(expected)
