"""Labelling: a batch of production audio out to people (Label Studio tasks, or files), their
labels back in through the labels contract, and the retrain started once enough are in.

`label_export` opens a batch from the recent window (drift does the same from the monitor
flow); `label_import` takes a Label Studio JSON export file, or pulls the finished annotations
of every batch's project from the Label Studio API, then checks whether the retrain is due;
`label_status` says what is open, what is labelled and what the retrain waits for.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import flow

from data_contracts.scoping import Scope
from tasks.label_studio import push_batch
from tasks.labelling import (
    labelling_status,
    labels_ready,
    open_labelling_batch,
    read_batch_state,
    write_batch_state,
)
from tasks.monitoring import announce_batch, import_labelled, read_window
from tasks.scoping import validate_scope


def open_batch(scope: Scope, window: pd.DataFrame, reason: str) -> dict[str, Any] | None:
    """Open a batch from `window` (Label Studio project and tasks when a server is set) and
    announce it; its id, task count, project and link (None: nothing to label)."""
    labelling_dir = scope.state.path("labelling_dir")
    audio_dir = scope.state.path("prediction_audio_dir")
    batch = open_labelling_batch(window, labelling_dir, scope.labelling, audio_dir, reason)
    if batch is None:
        return None
    project = None
    link = str(batch.path / "tasks.json")
    if scope.labelling.label_studio_url:
        project = push_batch(scope, batch.batch_id, batch.path / "tasks.json")
        state = read_batch_state(batch.path)
        write_batch_state(batch.path, {**state, "label_studio_project": project})
        link = f"{scope.labelling.label_studio_url.rstrip('/')}/projects/{project}/data"
    announce_batch(batch.batch_id, batch.n_tasks, reason, link, scope.state.path("monitoring_dir"))
    return {
        "batch": batch.batch_id,
        "tasks": batch.n_tasks,
        "label_studio_project": project,
        "link": link,
    }


@flow(name="label-export", log_prints=True)
def label_export(scope: Scope, reason: str = "by hand") -> dict[str, Any]:
    """Open a labelling batch from the recent production window now."""
    validate_scope(scope)
    window = read_window(scope.state.url("prediction_log_url"), scope.monitoring.window)
    opened = open_batch(scope, window, reason)
    return opened or {"batch": None, "tasks": 0, "label_studio_project": None, "link": None}


@flow(name="label-import", log_prints=True)
def label_import(scope: Scope, export_file: Path | None = None, trigger: bool = True) -> dict:
    """Import a Label Studio JSON export (a file, or pulled from the API of the scope's Label
    Studio), then start the retrain if enough labels are in."""
    validate_scope(scope)
    return import_labelled(scope, export_file, trigger)


@flow(name="label-status", log_prints=True)
def label_status(scope: Scope) -> dict[str, Any]:
    """The batches (tasks, labelled, open), the new labels and whether the retrain is due."""
    validate_scope(scope)
    status = labelling_status(scope.state.path("labelling_dir"))
    ready, why = labels_ready(status, scope.labelling, datetime.now(UTC))
    return {**status, "retrain_due": ready, "why": why}
