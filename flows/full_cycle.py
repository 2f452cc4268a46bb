"""The full cycle: scope -> ingest -> augment -> train (register, gate) -> package."""

from __future__ import annotations

from prefect import flow

from data_contracts.scoping import Scope
from flows.augment import augment
from flows.ingest import ingest
from flows.package import package
from flows.train import train
from tasks.artifacts import publish_markdown
from tasks.scoping import scope_markdown, validate_scope


@flow(name="full-cycle", log_prints=True)
def full_cycle(scope: Scope) -> dict[str, object]:
    """Run every stage of the cycle in order, each as a sub-flow visible in the Prefect UI."""
    validate_scope(scope)
    publish_markdown("scope", scope_markdown(scope), "The scoping config of this cycle")
    dataset_version = ingest(scope)
    augmented_version = augment(scope, dataset_version)
    trained = train(scope, augmented_version)
    packaged = package(scope)
    return {
        "dataset_version": dataset_version,
        "augmented_version": augmented_version,
        **trained,
        **packaged,
    }
