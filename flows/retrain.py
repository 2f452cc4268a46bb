"""Retrain: labelled production data + the old data -> augment (policy from the last error
analysis) -> train -> gate -> promote -> package; the running service moves to the champion.

Started by the labels (tasks.monitoring.retrain_when_labelled, after drift opened a batch), a
schedule or a person; it takes every label file no retrain has taken yet (claimed, so labels
that arrive while it runs feed the next one) and trains on all labels so far. Two retrains
on one workspace run one after the other (tasks/workspace_lock.py)."""

from __future__ import annotations

from prefect import flow

from data_contracts.scoping import Scope
from flows.augment import augment
from flows.ingest import ingest
from flows.package import package
from flows.train import train
from tasks.labelling import claim_labels
from tasks.retraining import plan_retrain, publish_retrain_changes, retrain_summary
from tasks.scoping import validate_scope
from tasks.workspace_lock import retrain_lock


@flow(name="retrain", log_prints=True)
def retrain(scope: Scope, reason: str = "manual retrain") -> dict[str, object]:
    """One more round of the cycle, started by monitoring, a schedule or a person (with why)."""
    validate_scope(scope)
    with retrain_lock(scope, reason):  # a second retrain on this workspace waits for this one
        claimed = claim_labels(scope.state.path("labelling_dir"), f"retrain: {reason}")
        plan = plan_retrain(scope)
        publish_retrain_changes(reason, plan.changes)
        dataset_version = ingest(plan.scope)
        augmented_version = augment(plan.scope, dataset_version)
        trained = train(plan.scope, augmented_version, warm_start_from=plan.warm_start_from)
        packaged = package(plan.scope) if trained["promoted"] else {}
    return retrain_summary(
        reason, claimed, plan, dataset_version, augmented_version, trained, packaged
    )
