"""Augment: a dataset version -> car-noise copies at sampled SNRs -> an augmented version."""

from __future__ import annotations

from prefect import flow

from data_contracts.scoping import Scope
from tasks.augmentation import augment_dataset, publish_augmentation_report
from tasks.ingestion import load_dataset
from tasks.scoping import validate_scope


@flow(name="augment", log_prints=True)
def augment(scope: Scope, dataset_version: str) -> str:
    """Mix generated (or recorded) car-cabin noise into the dataset, per the scope's policy."""
    validate_scope(scope)
    dataset_dir = scope.state.path("datasets_dir") / dataset_version
    manifest = load_dataset(dataset_dir)
    result = augment_dataset(
        manifest,
        dataset_dir,
        dataset_version,
        scope.state.path("augmented_dir"),
        scope.augmentation,
    )
    publish_augmentation_report(result, scope.augmentation)
    return result.version
