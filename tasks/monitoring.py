"""Monitoring steps: the production window, the champion's reference, the drift check (none
below the minimum window), the decision (drift opens a labelling batch), the labels check and
the trigger that starts a retrain once the labels are in. The drift state (when a batch was
last opened or a retrain started, for the cooldown) lives in `state.monitoring_dir`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import task

from data_contracts.scoping import MonitoringScope, Scope
from models.recognizer import Recognizer
from tasks.drift import (
    DRIFT_NUMERIC,
    DriftDecision,
    DriftResult,
    decide,
    drift_features,
    run_drift_report,
)

DRIFT_EVENT = "voicecycle.drift.detected"
LABELLING_EVENT = "voicecycle.labelling.opened"
RETRAIN_EVENT = "voicecycle.retrain.requested"
RETRAIN_DEPLOYMENT = "retrain/retrain"
STATE_FILE = "state.json"


@task(name="read-prediction-window", retries=2, retry_delay_seconds=2)
def read_window(prediction_log_url: str, size: int) -> pd.DataFrame:
    """The most recent `size` logged predictions (oldest first)."""
    from data_contracts.prediction_store import PredictionStore

    store = PredictionStore(prediction_log_url)
    try:
        return store.read(limit=size)
    finally:
        store.close()


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
    return (
        pd.read_csv(ref_path, keep_default_na=False),
        Recognizer.read_lexicon(recognizer),
        str(mv.version),
    )


def retrained(model_name: str, version: str) -> bool:
    """True when `version` came from a retrain (its training run names the version it started
    from: `warm_start_from`, set on every retrain while training.warm_start is on)."""
    import mlflow

    client = mlflow.MlflowClient()
    run_id = client.get_model_version(model_name, version).run_id
    return bool(run_id and client.get_run(run_id).data.tags.get("warm_start_from"))


@task(name="served-reference", retries=2, retry_delay_seconds=2)
def served_reference(
    model_name: str,
    version: str,
    held_out: pd.DataFrame,
    current: pd.DataFrame,
    monitoring_dir: Path,
    window: int,
) -> pd.DataFrame:
    """The reference this check compares the window with.

    A retrained champion was made for the production that drifted (its labels came from
    there), yet its held-out predictions are still the synthetic evaluation mix: measured on
    the story, the in-car share and SNR of the shifted traffic stay 1-2 reference deviations
    from them after the retrain, so drift could never fall. So the first full window such a
    champion serves alone becomes its reference (`monitoring_dir`/baselines/v<version>.csv),
    and later checks measure drift from the traffic it was promoted into. That window itself
    is still checked against the held-out predictions; the first model keeps them for good."""
    from tasks.drift import LOG_COLUMNS

    path = monitoring_dir / "baselines" / f"v{version}.csv"
    if path.is_file():
        served = pd.read_csv(path)
        served["transcript"] = served["transcript"].fillna("")
        return served
    alone = current["model_version"].astype(str).eq(str(version)).all()
    if len(current) >= window and alone and retrained(model_name, version):
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        current[[*LOG_COLUMNS, "model_version"]].to_csv(partial, index=False)
        partial.replace(path)  # whole or absent: a reader never sees half a reference
    return held_out


@task(name="drift-report")
def drift_check(
    reference: pd.DataFrame,
    current_log: pd.DataFrame,
    lexicon: set[str],
    html_path: Path,
    settings: MonitoringScope,
) -> DriftResult:
    """Evidently's drift preset over audio and prediction features, saved as HTML; below the
    scope's minimum window, a result that says no check ran (`evaluated=False`)."""
    if len(current_log) < settings.min_window:
        return DriftResult(0.0, (), len(reference), len(current_log), {}, None, evaluated=False)
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


def last_trigger(monitoring_dir: Path) -> datetime | None:
    """When monitoring last started a retrain (for the cooldown)."""
    path = monitoring_dir / STATE_FILE
    if not path.is_file():
        return None
    value = json.loads(path.read_text()).get("last_trigger")
    return datetime.fromisoformat(value) if value else None


@task(name="drift-decision")
def drift_decision(
    result: DriftResult, settings: MonitoringScope, monitoring_dir: Path
) -> DriftDecision:
    """Apply the scope's decision rule (drift share, minimum window, cooldown)."""
    return decide(
        result,
        settings.drift_share,
        settings.min_window,
        last_trigger(monitoring_dir),
        datetime.now(UTC),
        settings.cooldown_minutes,
    )


def record_trigger(monitoring_dir: Path, reason: str) -> None:
    """Remember when a retrain was started (the cooldown counts from here)."""
    path = monitoring_dir / STATE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"last_trigger": datetime.now(UTC).isoformat(), "reason": reason}))


@task(name="trigger-retrain")
def trigger_retrain(
    reason: str, scope: Scope, wait: bool = False, deployment: str = RETRAIN_DEPLOYMENT
) -> str:
    """Start the retrain deployment with this scope (its workspace made absolute for the
    worker) and emit the retrain event; record the trigger; return the flow-run id."""
    from prefect.deployments import run_deployment
    from prefect.events import emit_event
    from prefect.exceptions import ObjectNotFound

    scope = scope.with_workspace(scope.state.workspace.resolve())
    scope_payload: dict[str, Any] = scope.model_dump(mode="json")
    try:
        run = run_deployment(
            deployment,
            parameters={"scope": scope_payload, "reason": reason},
            timeout=None if wait else 0,
        )
    except ObjectNotFound:
        raise RuntimeError(
            f"the {deployment!r} deployment is not registered on this "
            "Prefect server: run `voicecycle deploy` first"
        ) from None
    record_trigger(scope.state.path("monitoring_dir"), reason)
    run_id = str(run.id)  # type: ignore[union-attr]  # sync call: a FlowRun, not a coroutine
    emit_event(
        event=RETRAIN_EVENT,
        resource={"prefect.resource.id": "voicecycle.retrain"},
        payload={"reason": reason, "flow_run": run_id},
    )
    return run_id


@task(name="announce-labelling-batch")
def announce_batch(
    batch_id: str, n_tasks: int, reason: str, link: str, monitoring_dir: Path
) -> None:
    """The drift and labelling events, a markdown artifact with the link and counts, and the
    cooldown's start (one shift opens one batch)."""
    from prefect.events import emit_event

    from tasks.artifacts import publish_markdown

    emit_event(
        event=DRIFT_EVENT,
        resource={"prefect.resource.id": "voicecycle.monitor"},
        payload={"reason": reason},
    )
    emit_event(
        event=LABELLING_EVENT,
        resource={"prefect.resource.id": f"voicecycle.labelling.{batch_id}"},
        payload={"batch": batch_id, "tasks": n_tasks, "reason": reason, "link": link},
    )
    publish_markdown(
        "labelling-batch",
        "\n".join(
            [
                f"# Labelling batch {batch_id} opened",
                "",
                f"- why: {reason}",
                f"- tasks: {n_tasks} production clips, least confident first",
                f"- label them at: {link}",
                "- the retrain runs when enough labels are in (labelling.min_labels, "
                "labelling.min_share) or after labelling.timeout_minutes",
            ]
        ),
        "The labelling batch drift opened",
    )
    record_trigger(monitoring_dir, f"labelling batch {batch_id}: {reason}")


@task(name="import-labelled")
def import_labelled(
    scope: Scope, export_file: Path | None = None, trigger: bool = True
) -> dict[str, object]:
    """Import a Label Studio JSON export (the file, else pulled from the API of the scope's
    Label Studio for the open batches), then start the retrain if enough labels are in."""
    from tasks.label_studio import pull_export
    from tasks.labelling import import_labels, load_export, open_projects

    labelling_dir = scope.state.path("labelling_dir")
    if export_file is not None:
        exported = load_export(export_file)
    elif scope.labelling.label_studio_url:
        exported = pull_export.fn(scope, open_projects(labelling_dir))
    else:
        raise ValueError(
            "label import needs a Label Studio JSON export FILE, or labelling.label_studio_url "
            "to pull the annotations from"
        )
    imported = import_labels.fn(exported, labelling_dir)
    return {**imported, **retrain_when_labelled.fn(scope, trigger)}


@task(name="retrain-when-labelled")
def retrain_when_labelled(scope: Scope, trigger: bool = True) -> dict[str, object]:
    """Start the retrain when the labels are in (tasks.labelling.labels_ready), taking the
    new label files for it; what was decided."""
    from tasks.labelling import claim_labels, labelling_status, labels_ready

    labelling_dir = scope.state.path("labelling_dir")
    status = labelling_status(labelling_dir)
    ready, why = labels_ready(status, scope.labelling, datetime.now(UTC))
    run_id = None
    if ready and trigger:
        run_id = trigger_retrain.fn(f"labels in: {why}", scope)
        claim_labels.fn(labelling_dir, f"flow-run {run_id}")
    return {
        "labels_ready": ready,
        "labels_reason": why,
        "pending_labels": status["pending_labels"],
        "retrain": run_id is not None,
        "retrain_flow_run": run_id,
    }


@task(name="publish-drift-report", retries=1)
def publish_drift(
    result: DriftResult, decision: DriftDecision, champion_version: str, experiment: str
) -> None:
    """The decision and per-column drift in the Prefect UI; the HTML report logged to MLflow
    (a window below the minimum is shown in the UI only: there is no measurement to log)."""
    import mlflow
    from prefect.artifacts import create_link_artifact

    from tasks.artifacts import markdown_table, publish_markdown

    rows = pd.DataFrame([{"column": k, **v} for k, v in result.per_column.items()])
    verdict = "DRIFT" if decision.drift else "no drift" if result.evaluated else "no decision"
    md = "\n".join(
        [
            f"# Drift check: {verdict} (champion v{champion_version})",
            "",
            f"- drifted columns: {len(result.drifted_columns)} of {len(result.per_column)} "
            f"(share {result.drift_share:.2f}); window {result.n_current} vs reference "
            f"{result.n_reference}",
            f"- decision: {decision.reason}",
            f"- labelling batch due: {decision.retrain}",
            "",
            markdown_table(rows) if len(rows) else "",
        ]
    )
    publish_markdown("drift-check", md, "Latest drift check")
    if not result.evaluated:
        return
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


@task(name="reset-cooldown")
def reset_cooldown(monitoring_dir: Path) -> bool:
    """Forget the last trigger, so monitoring starts afresh (True if there was one)."""
    path = monitoring_dir / STATE_FILE
    if not path.is_file():
        return False
    path.unlink()
    return True


@task(name="monitor-summary")
def monitor_summary(
    result: DriftResult,
    decision: DriftDecision,
    labelling_batch: str | None,
    labels: dict[str, object],
    model_version: str | None = None,
    labelled_wer: float | None = None,
) -> dict[str, object]:
    """What one monitoring run found and did, as the flow returns it: `labelling_batch` is
    the batch drift opened this run, `retrain` whether a retrain started this run,
    `labelled_wer` the serving version's WER on its labelled production samples (None: none
    of its answers is labelled yet)."""
    return {
        "model_version": model_version,
        "labelled_wer": labelled_wer,
        "drift": decision.drift,
        "reason": decision.reason,
        "drift_share": result.drift_share,
        "drifted": list(result.drifted_columns),
        "window": result.n_current,
        "labelling_batch": labelling_batch,
        "retrain": bool(labels.get("retrain", False)),
        "retrain_flow_run": labels.get("retrain_flow_run"),
        "labels_ready": labels.get("labels_ready", False),
        "labels_reason": labels.get("labels_reason", ""),
        "pending_labels": labels.get("pending_labels", 0),
    }
