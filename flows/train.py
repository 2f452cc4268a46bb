"""Train: augmented data -> features -> CTC model -> error analysis -> MLflow -> gate."""

from __future__ import annotations

from prefect import flow

from data_contracts.scoping import Scope
from tasks.augmentation import augmentation_info, load_augmented
from tasks.error_analysis import (
    build_drift_reference,
    decide_promotion,
    evaluate_recognizer,
    publish_error_analysis,
    run_error_analysis,
)
from tasks.evaluation import slice_metrics
from tasks.registry import (
    CHAMPION,
    alias_version,
    code_version,
    configure_mlflow,
    download_recognizer,
    log_run_results,
    promote,
    register_model,
    start_run,
)
from tasks.scoping import validate_scope
from tasks.feature_cache import cache_features
from tasks.training import (
    save_recognizer,
    slice_headlines,
    train_acoustic_model,
    training_sets,
)


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
    manifest = load_augmented(data_dir)
    train_ids, dev_ids, lm_texts = training_sets(manifest)
    cache = cache_features(manifest, data_dir, st.path("features_dir"), augmented_version)
    tracking = st.url("mlflow_tracking_uri")
    artifacts = st.path("mlflow_artifacts")
    configure_mlflow(tracking, reg.experiment, artifacts)
    tags = {
        **code_version(),
        "augmented_version": augmented_version,
        "dataset_version": augmentation_info(data_dir)["dataset_version"],
    }
    init_from = download_recognizer(reg.model_name, warm_start_from) if warm_start_from else None
    if warm_start_from:
        tags["warm_start_from"] = warm_start_from
    run_id = resume_run_id or start_run(
        tracking,
        reg.experiment,
        artifacts,
        f"train-{augmented_version}",
        tags,
        {
            "training": scope.training.model_dump_json(),
            "augmentation": scope.augmentation.model_dump_json(),
            "train_clips": len(train_ids),
            "dev_clips": len(dev_ids),
        },
    )
    result = train_acoustic_model(
        cache,
        train_ids,
        dev_ids,
        st.path("runs_dir") / run_id,
        scope.training,
        init_from=init_from,
    )
    recognizer_dir = save_recognizer(
        result, lm_texts, scope.training, st.path("runs_dir") / run_id / "recognizer"
    )
    predictions = evaluate_recognizer(recognizer_dir, manifest, data_dir, scope.training.seed)
    report_dir = st.path("runs_dir") / run_id / "error_analysis"
    analysis, _ = run_error_analysis(
        predictions, scope.targets, None, scope.augmentation, report_dir
    )
    build_drift_reference(predictions, manifest, data_dir, report_dir / "drift_reference.csv")
    champion = alias_version(reg.model_name, CHAMPION)
    champion_slices = None
    if champion is not None:
        champion_dir = download_recognizer(reg.model_name, champion)
        champion_predictions = evaluate_recognizer(
            champion_dir, manifest, data_dir, scope.training.seed, label="champion"
        )
        champion_slices = slice_metrics(champion_predictions)
    decision = decide_promotion(
        analysis.slices,
        champion_slices,
        scope.targets,
        reg.slice_tolerance,
        reg.bootstrap_champion,
        reg.min_slice_n,
    )
    metrics = {
        f"{split}_{m}": v[m] for split, v in analysis.overall.items() for m in ("wer", "cer")
    }
    metrics.update(slice_headlines(analysis.slices))
    metrics.update(
        {
            "train_utterances_per_second": result.utterances_per_second,
            "train_seconds": result.seconds,
            "best_dev_wer_greedy": result.best_dev_wer,
        }
    )
    log_run_results(run_id, result.history, metrics, [report_dir])
    registered = register_model(
        run_id,
        recognizer_dir,
        reg.model_name,
        {
            **tags,
            "promoted": str(decision.promote).lower(),
            "gate": " | ".join(decision.reasons)[:4000],
        },
    )
    if decision.promote:
        promote(reg.model_name, registered.version, " ".join(decision.reasons))
    publish_error_analysis(analysis, report_dir, decision, registered.version, champion)
    return {
        "run_id": run_id,
        "model_version": registered.version,
        "promoted": decision.promote,
        "reasons": list(decision.reasons),
        "champion": alias_version(reg.model_name, CHAMPION),
        **metrics,
    }
