"""Monitoring over time: every drift check adds a snapshot to an Evidently UI project.

The project ("voicecycle", in the workspace folder `state.evidently_workspace`) holds one
snapshot per check, stamped with the check's time and tagged with the serving model version.
Each snapshot is an Evidently report over the check's figures as a one-row dataset (drift
share, drifted features, mean confidence, out-of-lexicon share, WER on labelled production
samples when there are labels, the model version), so the dashboard's line panels plot each
figure over the checks: `evidently ui --workspace <dir>` shows them.
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
