"""The full cycle: scope -> ingest -> augment -> train (register, gate) -> package."""

from __future__ import annotations

from prefect import flow

from data_contracts.scoping import Scope
from flows.augment import augment
from flows.ingest import ingest
from flows.package import package
from flows.train import train
from tasks.artifacts import publish_markdown
from tasks.retraining import current_champion
from tasks.scoping import scope_markdown, validate_scope


@flow(name="full-cycle", log_prints=True)
def full_cycle(scope: Scope, unless_champion: bool = False) -> dict[str, object]:
    """Run every stage of the cycle in order, each as a sub-flow visible in the Prefect UI.

    With `unless_champion`, a registry that already has a champion keeps it and nothing runs
    (the story replays on what is there)."""
    validate_scope(scope)
    if unless_champion and (champion := current_champion(scope)) is not None:
        return {"model_version": champion, "ran": False}
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
