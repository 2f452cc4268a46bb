"""Retrain: labelled production data + the old data -> augment (policy from the last error
analysis) -> train -> gate -> promote -> package; the running service moves to the champion."""

from __future__ import annotations

from prefect import flow

from data_contracts.scoping import Scope
from flows.augment import augment
from flows.ingest import ingest
from flows.package import package
from flows.train import train
from tasks.artifacts import publish_markdown
from tasks.labelling import export_labelling_batch
from tasks.monitoring import read_window
from tasks.retraining import (
    champion_lexicon,
    current_champion,
    respeak_new_words,
    retrain_scope,
)
from tasks.scoping import validate_scope


@flow(name="retrain", log_prints=True)
def retrain(scope: Scope, reason: str = "manual retrain") -> dict[str, object]:
    """One more round of the cycle, started by monitoring, a schedule or a person (with why)."""
    validate_scope(scope)
    publish_markdown("retrain-reason", f"# Retrain\n\nWhy: {reason}", "Why this retrain ran")
    window = read_window(scope.state.url("prediction_log_url"), scope.monitoring.window)
    batch = export_labelling_batch(
        window, scope.state.workspace, low_confidence=scope.labelling.low_confidence
    )
    next_scope, changes = retrain_scope(scope)
    champion = current_champion(next_scope)
    if champion is not None:
        next_scope, respoken = respeak_new_words(next_scope, champion_lexicon(next_scope, champion))
        changes = [*changes, *respoken]
    publish_markdown(
        "retrain-changes",
        "# What this retrain changes\n\n" + "".join(f"- {c}\n" for c in changes or ["nothing"]),
        "Data and policy changes of this retrain",
    )
    dataset_version = ingest(next_scope)
    augmented_version = augment(next_scope, dataset_version)
    warm = champion if next_scope.training.warm_start else None
    trained = train(next_scope, augmented_version, warm_start_from=warm)
    packaged = package(next_scope) if trained["promoted"] else {}
    return {
        "reason": reason,
        "labelling_batch": str(batch) if batch else None,
        "changes": changes,
        "dataset_version": dataset_version,
        "augmented_version": augmented_version,
        **trained,
        **packaged,
    }
