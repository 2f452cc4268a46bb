"""Augment: a dataset version -> car-noise copies at sampled SNRs -> an augmented version.

Mixing fans out in a subflow on the scope's task runner: one task run per shard of clips.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow
from prefect.utilities.annotations import unmapped

from data_contracts.scoping import Scope
from tasks.augmentation import (
    AugmentResult,
    discard_augmentation_staging,
    mix_shard,
    plan_augmented_version,
    publish_augmentation_report,
    publish_augmented_version,
)
from tasks.fanout import max_workers, task_runner
from tasks.ingestion import load_dataset
from tasks.scoping import validate_scope


@flow(name="mix-car-noise")
def mix_car_noise(scope: Scope, dataset_dir: Path, dataset_version: str) -> AugmentResult:
    """Plan the noisy copies, mix them (one task run per shard), publish the version."""
    plan = plan_augmented_version(
        load_dataset(dataset_dir),
        dataset_dir,
        dataset_version,
        scope.state.path("augmented_dir"),
        scope.augmentation,
        max_workers(scope),
    )
    mixed = mix_shard.map(
        plan.shards,
        unmapped(dataset_dir),
        unmapped(plan.noisy_dir),
        unmapped(scope.augmentation.noise_dir),
    )
    published = publish_augmented_version.submit(
        plan, scope.augmentation, wait_for=mixed, return_state=False
    )
    published.wait()  # finished or failed, no half-built folder stays (no-op once published)
    discard_augmentation_staging(plan)
    mixed.result()  # a failed shard raises its own error, not "publish never ran"
    return published.result()


@flow(name="augment", log_prints=True)
def augment(scope: Scope, dataset_version: str) -> str:
    """Mix generated (or recorded) car-cabin noise into the dataset, per the scope's policy."""
    validate_scope(scope)
    dataset_dir = scope.state.path("datasets_dir") / dataset_version
    result = mix_car_noise.with_options(task_runner=task_runner(scope))(
        scope, dataset_dir, dataset_version
    )
    publish_augmentation_report(result, scope.augmentation)
    return result.version
