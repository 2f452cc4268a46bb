"""Train: augmented data -> features -> CTC model -> error analysis -> MLflow -> gate.

Feature caching and evaluation fan out in subflows on the scope's task runner: one task run
per shard of clips (whole 32-clip batches, so features and WERs are those of one pass).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import flow
from prefect.runtime import flow_run
from prefect.utilities.annotations import unmapped

from data_contracts.scoping import Scope
from tasks.augmentation import augmentation_info, load_augmented
from tasks.distributed import train_with_torchrun
from tasks.error_analysis import (
    build_drift_reference,
    decide_promotion,
    evaluation_rows,
    publish_error_analysis,
    run_error_analysis,
)
from tasks.evaluation import slice_metrics
from tasks.fanout import max_workers, task_runner
from tasks.feature_cache import (
    cache_feature_shard,
    cached_features,
    merge_feature_shards,
    plan_feature_shards,
)
from tasks.gate import overruled
from tasks.inference import merge_predictions, shard_threads, transcribe_shard, transcription_shards
from tasks.registry import (
    CHAMPION,
    alias_version,
    configure_mlflow,
    download_recognizer,
    log_run_results,
    promote,
    register_model,
    registry_lock_url,
    start_run,
)
from tasks.scoping import validate_scope
from tasks.tracking import (
    log_dataset_inputs,
    model_params,
    registration_tags,
    run_metrics,
    run_params,
    run_tags,
)
from tasks.training import save_recognizer, train_acoustic_model, training_sets


@flow(name="cache-features")
def cache_features(scope: Scope, data_dir: Path, key: str) -> Path:
    """Log-mel features of every clip, once per augmented version (one task run per shard)."""
    cache_dir = scope.state.path("features_dir")
    found = cached_features(cache_dir, key)
    if found is not None:
        return found
    plan = plan_feature_shards(load_augmented(data_dir), cache_dir, key, max_workers(scope))
    parts = cache_feature_shard.map(
        plan.shards,
        unmapped(data_dir),
        plan.parts,
        unmapped(shard_threads(scope, len(plan.shards))),
    )
    return merge_feature_shards(parts.result(), plan.path)


@flow(name="evaluate-recognizer")
def evaluate(scope: Scope, recognizer_dir: Path, data_dir: Path, label: str) -> pd.DataFrame:
    """Transcribe the fixed evaluation sets with the serving decoder, one task run per shard."""
    rows = evaluation_rows(load_augmented(data_dir), scope.training.seed)
    shards = transcription_shards(rows, max_workers(scope))
    transcribed = transcribe_shard.map(
        unmapped(recognizer_dir),
        shards,
        unmapped(data_dir),
        unmapped(shard_threads(scope, len(shards))),
        unmapped(label),
    )
    return merge_predictions(transcribed.result())


@flow(name="train", log_prints=True)
def train(
    scope: Scope,
    augmented_version: str,
    warm_start_from: str | None = None,
    resume_run_id: str | None = None,
) -> dict[str, object]:
    """Train a recogniser, analyse its errors, register it, and promote it if the gate agrees.

    `warm_start_from` names a registry version whose weights training starts from (retrains
    start from the champion); `resume_run_id` continues an interrupted run from its last
    checkpoint.
    """
    validate_scope(scope)
    st, reg = scope.state, scope.registry
    data_dir = st.path("augmented_dir") / augmented_version
    dataset_version = str(augmentation_info(data_dir)["dataset_version"])
    manifest = load_augmented(data_dir)
    train_ids, dev_ids, lm_texts = training_sets(manifest)
    cache = cache_features.with_options(task_runner=task_runner(scope))(
        scope, data_dir, augmented_version
    )
    tracking, artifacts = st.url("mlflow_tracking_uri"), st.path("mlflow_artifacts")
    configure_mlflow(tracking, reg.experiment, artifacts)
    tags = run_tags(augmented_version, dataset_version, warm_start_from, flow_run.get_id())
    init_from = download_recognizer(reg.model_name, warm_start_from) if warm_start_from else None
    run_id = resume_run_id or start_run(
        tracking,
        reg.experiment,
        artifacts,
        f"train-{augmented_version}",
        tags,
        run_params(scope, len(train_ids), len(dev_ids)),
    )
    log_dataset_inputs(run_id, manifest, data_dir, augmented_version, dataset_version)
    run_dir = st.path("runs_dir") / run_id
    # one process, or a torch DDP job of training.processes ranks launched by torchrun
    train_step = train_acoustic_model if scope.training.processes == 1 else train_with_torchrun
    result = train_step(cache, train_ids, dev_ids, run_dir, scope.training, init_from=init_from)
    recognizer_dir = save_recognizer(result, lm_texts, scope.training, run_dir / "recognizer")
    fan_out = evaluate.with_options(task_runner=task_runner(scope))
    # annotated: mypy reads an untyped DataFrame-returning flow as Flow[P, NoReturn]
    predictions: pd.DataFrame = fan_out(scope, recognizer_dir, data_dir, "challenger")
    report_dir = run_dir / "error_analysis"
    analysis, _ = run_error_analysis(
        predictions, scope.targets, None, scope.augmentation, report_dir
    )
    build_drift_reference(predictions, manifest, data_dir, report_dir / "drift_reference.csv")
    champion = alias_version(reg.model_name, CHAMPION)
    champion_slices = None
    if champion is not None:
        champion_dir = download_recognizer(reg.model_name, champion)
        champion_predictions: pd.DataFrame = fan_out(scope, champion_dir, data_dir, "champion")
        champion_slices = slice_metrics(champion_predictions)
    decision = decide_promotion(
        analysis.slices,
        champion_slices,
        scope.targets,
        reg.slice_tolerance,
        reg.bootstrap_champion,
        reg.min_slice_n,
    )
    metrics = run_metrics(analysis.overall, analysis.slices, result)
    log_run_results(run_id, result.history, metrics, [report_dir], model_params(result.config))
    registered = register_model(
        run_id, recognizer_dir, reg.model_name, registration_tags(tags, decision)
    )
    if decision.promote:  # a compare-and-set: only over the champion the gate compared with
        promotion = promote(
            reg.model_name,
            registered.version,
            " ".join(decision.reasons),
            lock_url=registry_lock_url(scope),
            gated_against=champion,
        )
        if not promotion.promoted:
            decision = overruled(decision, promotion.reason)
    publish_error_analysis(analysis, report_dir, decision, registered.version, champion)
    return {
        "run_id": run_id,
        "model_version": registered.version,
        "promoted": decision.promote,
        "reasons": list(decision.reasons),
        "champion": alias_version(reg.model_name, CHAMPION),
        **metrics,
    }
