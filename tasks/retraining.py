"""What a retrain changes: the data (labelled production batches join the sources) and the
augmentation policy (the last error analysis's recommendations)."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import task

from data_contracts.scoping import AugmentationPolicy, DataSource, Scope
from tasks.labelling import labelled_batches


def latest_recommendations(runs_dir: Path) -> Path | None:
    """The newest error analysis's recommendations.json, if any run wrote one."""
    found = sorted(
        runs_dir.glob("*/error_analysis/recommendations.json"), key=lambda p: p.stat().st_mtime
    )
    return found[-1] if found else None


def next_policy(
    policy: AugmentationPolicy, recommendations: dict[str, object]
) -> AugmentationPolicy:
    """The augmentation policy with the recommended changes applied (only known keys)."""
    proposed = recommendations.get("policy")
    if not isinstance(proposed, dict):
        return policy
    update = {
        k: proposed[k]
        for k in ("augmented_share", "snr_db_min", "snr_db_max", "noise_weights")
        if k in proposed
    }
    return AugmentationPolicy.model_validate({**policy.model_dump(), **update})


@task(name="retrain-scope")
def retrain_scope(scope: Scope) -> tuple[Scope, list[str]]:
    """The scope of the next round, and the changes made to it, in words."""
    changes: list[str] = []
    sources = list(scope.sources)
    known = {str(s.path) for s in sources if s.path is not None}
    for i, manifest in enumerate(labelled_batches(scope.state.workspace)):
        if str(manifest) in known:
            continue
        sources.append(DataSource(kind="csv", name=f"labelled-{i}", path=manifest))
        changes.append(f"added labelled production batch {manifest.parent.name}")
    policy = scope.augmentation
    rec_path = latest_recommendations(scope.state.path("runs_dir"))
    if rec_path is not None:
        policy = next_policy(policy, json.loads(rec_path.read_text()))
        if policy != scope.augmentation:
            changes.append(
                f"augmentation policy from {rec_path.parent.parent.name}: "
                f"share {policy.augmented_share:.2f}, SNR {policy.snr_db_min:g} to "
                f"{policy.snr_db_max:g} dB, weights {policy.noise_weights}"
            )
    return scope.model_copy(update={"sources": sources, "augmentation": policy}), changes


@task(name="current-champion")
def current_champion(scope: Scope) -> str | None:
    """The registry version of the champion (what a warm-started retrain refines)."""
    from tasks.registry import CHAMPION, alias_version, configure_mlflow

    configure_mlflow(
        scope.state.url("mlflow_tracking_uri"),
        scope.registry.experiment,
        scope.state.path("mlflow_artifacts"),
    )
    return alias_version(scope.registry.model_name, CHAMPION)
