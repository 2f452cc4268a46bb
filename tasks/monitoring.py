"""Monitoring steps: the production window, the champion's reference, the drift decision,
and the trigger that starts a retrain."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import task

from data_contracts.scoping import MonitoringScope
from tasks.drift import (
    DRIFT_NUMERIC,
    DriftDecision,
    DriftResult,
    decide,
    drift_features,
    run_drift_report,
)

DRIFT_EVENT = "voicecycle.drift.detected"
RETRAIN_DEPLOYMENT = "retrain/retrain"


@task(name="read-prediction-window", retries=2, retry_delay_seconds=2)
def read_window(prediction_log_url: str, size: int) -> pd.DataFrame:
    """The most recent `size` logged predictions (oldest first)."""
    from deployments.prediction_log import PredictionStore

    store = PredictionStore(prediction_log_url)
    try:
        return store.read(limit=size)
    finally:
        store.close()


def lexicon_of(recognizer_dir: Path) -> set[str]:
    """The words a saved recogniser can output: its LM vocabulary plus hot words."""
    config = json.loads((recognizer_dir / "config.json").read_text())
    words: set[str] = set(config.get("hot_words", []))
    lm = config.get("lm") or {}
    for history, followers in lm.get("bigram_counts", {}).items():
        words.add(history)
        words.update(followers)
    return {w for w in words if not w.startswith("<")}


@task(name="champion-reference", retries=2, retry_delay_seconds=2)
def champion_reference(
    model_name: str, alias: str, dest: Path
) -> tuple[pd.DataFrame, set[str], str]:
    """The champion's drift reference table, its lexicon and its version."""
    import mlflow

    from tasks.registry import download_recognizer

    client = mlflow.MlflowClient()
    mv = client.get_model_version_by_alias(model_name, alias)
    dest.mkdir(parents=True, exist_ok=True)
    ref_path = mlflow.artifacts.download_artifacts(
        run_id=mv.run_id, artifact_path="error_analysis/drift_reference.csv", dst_path=str(dest)
    )
    recognizer = download_recognizer(model_name, str(mv.version), dest / "model")
    return pd.read_csv(ref_path, keep_default_na=False), lexicon_of(recognizer), str(mv.version)


@task(name="drift-report")
def drift_check(
    reference: pd.DataFrame,
    current_log: pd.DataFrame,
    lexicon: set[str],
    html_path: Path,
    settings: MonitoringScope,
) -> DriftResult:
    """Evidently's drift preset over audio and prediction features, saved as HTML."""
    ref = drift_features(reference, lexicon)
    cur = drift_features(current_log, lexicon)
    html_path.parent.mkdir(parents=True, exist_ok=True)
    thresholds = {
        c: settings.column_thresholds.get(c, settings.column_drift_threshold) for c in DRIFT_NUMERIC
    }
    return run_drift_report(
        ref,
        cur,
        html_path,
        column_drift_threshold=thresholds,
        drift_share_threshold=settings.drift_share,
    )


def _state_path(workspace: Path) -> Path:
    return workspace / "monitoring" / "state.json"


def last_trigger(workspace: Path) -> datetime | None:
    """When monitoring last started a retrain (for the cooldown)."""
    path = _state_path(workspace)
    if not path.is_file():
        return None
    value = json.loads(path.read_text()).get("last_trigger")
    return datetime.fromisoformat(value) if value else None


@task(name="drift-decision")
def drift_decision(
    result: DriftResult, settings: MonitoringScope, workspace: Path
) -> DriftDecision:
    """Apply the scope's decision rule (drift share, minimum window, cooldown)."""
    return decide(
        result,
        settings.drift_share,
        settings.min_window,
        last_trigger(workspace),
        datetime.now(UTC),
        settings.cooldown_minutes,
    )


def record_trigger(workspace: Path, reason: str) -> None:
    """Remember when a retrain was started (the cooldown counts from here)."""
    path = _state_path(workspace)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"last_trigger": datetime.now(UTC).isoformat(), "reason": reason}))


@task(name="trigger-retrain")
def trigger_retrain(
    reason: str, scope_payload: dict[str, Any], workspace: Path, wait: bool = False
) -> str:
    """Emit the drift event and start the retrain deployment (returns its flow-run id)."""
    from prefect.deployments import run_deployment
    from prefect.events import emit_event

    emit_event(
        event=DRIFT_EVENT,
        resource={"prefect.resource.id": "voicecycle.monitor"},
        payload={"reason": reason},
    )
    from prefect.exceptions import ObjectNotFound

    try:
        run = run_deployment(
            RETRAIN_DEPLOYMENT,
            parameters={"scope": scope_payload, "reason": reason},
            timeout=None if wait else 0,
        )
    except ObjectNotFound:
        raise RuntimeError(
            f"the {RETRAIN_DEPLOYMENT!r} deployment is not registered on this "
            "Prefect server: run `voicecycle deploy` first"
        ) from None
    record_trigger(workspace, reason)
    return str(run.id)  # type: ignore[union-attr]  # sync call: a FlowRun, not a coroutine


@task(name="publish-drift-report", retries=1)
def publish_drift(
    result: DriftResult, decision: DriftDecision, champion_version: str, experiment: str
) -> None:
    """The decision and per-column drift in the Prefect UI; the HTML report logged to MLflow."""
    import mlflow
    from prefect.artifacts import create_link_artifact

    from tasks.artifacts import markdown_table, publish_markdown

    rows = pd.DataFrame([{"column": k, **v} for k, v in result.per_column.items()])
    verdict = "DRIFT" if decision.drift else "no drift"
    md = "\n".join(
        [
            f"# Drift check: {verdict} (champion v{champion_version})",
            "",
            f"- drifted columns: {len(result.drifted_columns)} of {len(result.per_column)} "
            f"(share {result.drift_share:.2f}); window {result.n_current} vs reference "
            f"{result.n_reference}",
            f"- decision: {decision.reason}",
            f"- retrain triggered: {decision.retrain}",
            "",
            markdown_table(rows) if len(rows) else "",
        ]
    )
    publish_markdown("drift-check", md, "Latest drift check")
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise RuntimeError(f"MLflow experiment {experiment!r} does not exist")
    run = client.create_run(
        exp.experiment_id,
        run_name="monitor",
        tags={"kind": "drift-check", "champion_version": champion_version},
    )
    client.log_metric(run.info.run_id, "drift_share", result.drift_share)
    client.log_metric(run.info.run_id, "window", result.n_current)
    client.log_param(run.info.run_id, "decision", decision.reason[:500])
    if result.html_path is not None and result.html_path.is_file():
        client.log_artifact(run.info.run_id, str(result.html_path))
        create_link_artifact(
            key="drift-report",
            link=result.html_path.resolve().as_uri(),
            link_text="Evidently drift report (HTML)",
        )
    client.set_terminated(run.info.run_id)
