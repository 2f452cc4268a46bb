"""Monitoring over time: every drift check adds a snapshot to an Evidently UI project.

The project ("voicecycle", in the workspace folder `state.evidently_workspace`) holds one
snapshot per check, stamped with the check's time and tagged with the serving model version.
Each snapshot is an Evidently report over the check's figures as a one-row dataset (drift
share, drifted features, mean confidence, out-of-lexicon share, WER on labelled production
samples when there are labels, the model version), so the dashboard's line panels plot each
figure over the checks: `evidently ui --workspace <dir>` shows them.

The labelled WER is the serving version's: the transcripts it gave (the prediction log) scored
against the labels people sent back for those requests (every imported label file of
`state.labelling_dir`, joined by request id), both through the transcript rules. A version
none of whose predictions has a label yet has no point on that panel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import task

from tasks.drift import DriftResult, oov_share

PROJECT = "voicecycle"
TAB = "Monitoring"
# column of the one-row dataset -> (panel title, legend)
FIGURES: dict[str, tuple[str, str]] = {
    "drift_share": ("Drift share", "share of drift features that drifted"),
    "drifted_features": ("Drifted features", "drift features that drifted"),
    "mean_confidence": ("Mean confidence", "mean confidence of the window"),
    "oov_share": ("Out-of-lexicon share", "mean share of words outside the lexicon"),
    "labelled_wer": ("WER on labelled production samples", "WER (where labels exist)"),
    "model_version": ("Model version", "registry version serving"),
}


@dataclass(frozen=True)
class CheckFigures:
    """What one drift check measured, as the dashboard plots it."""

    when: datetime
    model_version: str
    drift_share: float
    drifted_features: int
    mean_confidence: float
    oov_share: float
    labelled_wer: float | None = None  # None: no labelled production samples in the window


def check_frame(figures: CheckFigures) -> pd.DataFrame:
    """The figures as a one-row dataset (the model version as a number where it is one)."""
    try:
        version = float(figures.model_version)
    except ValueError:
        version = math.nan
    row: dict[str, float] = {
        "drift_share": figures.drift_share,
        "drifted_features": float(figures.drifted_features),
        "mean_confidence": figures.mean_confidence,
        "oov_share": figures.oov_share,
        "labelled_wer": math.nan if figures.labelled_wer is None else figures.labelled_wer,
        "model_version": version,
    }
    return pd.DataFrame([row])


def _panels() -> list[Any]:
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import line_plot_panel

    return [
        line_plot_panel(
            title=title,
            values=[PanelMetric(legend=legend, metric="MeanValue", metric_labels={"column": col})],
            size="half",
        )
        for col, (title, legend) in FIGURES.items()
    ]


def open_project(workspace_dir: Path) -> tuple[Any, Any]:
    """The Evidently workspace and its "voicecycle" project, made with its dashboard once."""
    from evidently.ui.workspace import Workspace

    workspace_dir.mkdir(parents=True, exist_ok=True)
    workspace = Workspace(str(workspace_dir))
    found = workspace.search_project(PROJECT)
    if found:
        return workspace, found[0]
    project = workspace.create_project(PROJECT, description="voice search: drift checks over time")
    for panel in _panels():
        project.dashboard.add_panel(panel, tab=TAB)
    return workspace, project


def add_snapshot(workspace_dir: Path, figures: CheckFigures) -> str:
    """Add one check's snapshot to the project; its id."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import MeanValue

    workspace, project = open_project(workspace_dir)
    frame = check_frame(figures)
    present = [c for c in FIGURES if not math.isnan(float(frame[c].iloc[0]))]
    data = Dataset.from_pandas(
        frame[present], data_definition=DataDefinition(numerical_columns=present)
    )
    snapshot = Report([MeanValue(column=c) for c in present]).run(
        current_data=data,
        timestamp=figures.when,
        metadata={"model_version": figures.model_version},
        tags=[f"model_version={figures.model_version}"],
        name=f"drift check {figures.when.isoformat(timespec='seconds')}",
    )
    ref = workspace.add_run(project.id, snapshot)
    return str(getattr(ref, "id", ref))


def read_labels(labelling_dir: Path) -> pd.DataFrame:
    """Every imported label as (request_id, label); where a request was labelled twice (an
    import and a hand-filled CSV), the later file's label."""
    from tasks.labelling import labelled_batches

    frames = []
    for path in labelled_batches(labelling_dir):
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        frames.append(frame[["utterance_id", "transcript"]])
    if not frames:
        return pd.DataFrame({"request_id": [], "label": []}, dtype=str)
    labels = pd.concat(frames, ignore_index=True)
    labels = labels[labels["transcript"].str.strip() != ""]
    labels = labels.drop_duplicates("utterance_id", keep="last")
    return labels.rename(columns={"utterance_id": "request_id", "transcript": "label"})


def labelled_wer(labels: pd.DataFrame, logged: pd.DataFrame, model_version: str) -> float | None:
    """WER of `model_version`'s logged transcripts (request_id, model_version, transcript)
    on the labelled requests; None when none of its predictions has a label."""
    from tasks.evaluation.metrics import wer
    from tasks.text import normalise_transcript

    served = logged[logged["model_version"].astype(str) == str(model_version)]
    joined = served.merge(labels, on="request_id", how="inner")
    if joined.empty:
        return None
    refs = [normalise_transcript(t) for t in joined["label"]]
    hyps = [normalise_transcript(str(t or "")) for t in joined["transcript"]]
    return wer(refs, hyps)


def read_logged(prediction_log_url: str, request_ids: list[str]) -> pd.DataFrame:
    """The logged (request_id, model_version, transcript) of these requests."""
    import sqlalchemy as sa

    from data_contracts.prediction_store import PredictionStore

    store = PredictionStore(prediction_log_url)
    columns = [store.table.c[n] for n in ("request_id", "model_version", "transcript")]
    rows: list[dict[str, Any]] = []
    try:
        with store.engine.connect() as conn:
            for start in range(0, len(request_ids), 500):  # SQLite's bound-parameter limit
                chunk = request_ids[start : start + 500]
                query = sa.select(*columns).where(store.table.c.request_id.in_(chunk))
                rows.extend(dict(r) for r in conn.execute(query).mappings())
    finally:
        store.close()
    return pd.DataFrame(rows, columns=["request_id", "model_version", "transcript"])


@task(retries=2, retry_delay_seconds=2)
def labelled_production_wer(
    labelling_dir: Path, prediction_log_url: str, model_version: str
) -> float | None:
    """The serving version's WER on the labelled production samples (None: no labels yet)."""
    labels = read_labels(labelling_dir)
    if labels.empty:
        return None
    logged = read_logged(prediction_log_url, labels["request_id"].tolist())
    return labelled_wer(labels, logged, model_version)


@task(retries=2, retry_delay_seconds=2)
def record_check(
    workspace_dir: Path,
    result: DriftResult,
    model_version: str,
    current: pd.DataFrame,
    lexicon: set[str],
    labelled_wer: float | None = None,
    when: datetime | None = None,
) -> str | None:
    """Add this drift check to the Evidently UI project; its snapshot id (None: the window
    was below the minimum, no check ran)."""
    if not result.evaluated or current.empty:
        return None
    figures = CheckFigures(
        when=when or datetime.now(UTC),
        model_version=model_version,
        drift_share=result.drift_share,
        drifted_features=len(result.drifted_columns),
        mean_confidence=float(pd.to_numeric(current["confidence"]).mean()),
        oov_share=float(pd.Series(oov_share(current["transcript"].fillna(""), lexicon)).mean()),
        labelled_wer=labelled_wer,
    )
    return add_snapshot(workspace_dir, figures)


def read_checks(workspace_dir: Path) -> pd.DataFrame:
    """Every snapshot of the project as a row (when, the serving version tag, and each figure
    it carries; NaN where it had none, as labelled_wer before labels), oldest first."""
    workspace, project = open_project(workspace_dir)
    rows = []
    for run_id in workspace.list_runs(project.id):
        run = workspace.get_run(project.id, run_id)
        row: dict[str, Any] = {"when": run.timestamp, "version": run.metadata.get("model_version")}
        for result in run.metric_results.values():
            column = result.metric_value_location.metric.params.get("column")
            if column in FIGURES:
                row[column] = float(result.value)
        rows.append(row)
    table = pd.DataFrame(rows, columns=["when", "version", *FIGURES])
    return table.sort_values("when", ignore_index=True)
