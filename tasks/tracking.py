"""What a training run tells MLflow: tags, flat hyper-parameters, dataset inputs, metrics.

The train flow only wires these; tasks.registry does the writing of runs and versions.
Hyper-parameters are flat params (``training.learning_rate``, ``augmentation.snr_db_min``,
``model.rnn_hidden``) so MLflow's compare view and search can use them, and each split of
the augmented version is an MLflow dataset input (name = version, context = split).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import task

from data_contracts.scoping import Scope
from models.ctc import AcousticModelConfig
from tasks.gate import GateDecision
from tasks.registry import FLOW_RUN_TAG, code_version
from tasks.training import TrainResult

PARAM_LIMIT = 6000  # MLflow's longest param value

# Manifest columns that describe a clip; the dataset input's schema and profile show them.
DATASET_COLUMNS = (
    "utterance_id",
    "audio_path",
    "transcript",
    "split",
    "condition",
    "noise_type",
    "snr_db",
    "voice",
    "synthesizer",
    "duration_s",
)


def flat_params(values: Mapping[str, Any], prefix: str) -> dict[str, str]:
    """Nested settings -> {"prefix.key.sub": "value"}; lists joined with commas."""
    out: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}.{key}"
        if isinstance(value, Mapping):
            out.update(flat_params(value, name) if value else {name: "{}"})
        elif isinstance(value, list | tuple):
            out[name] = ",".join(str(v) for v in value)[:PARAM_LIMIT]
        else:
            out[name] = str(value)[:PARAM_LIMIT]
    return out


@task(name="run-params")
def run_params(scope: Scope, train_clips: int, dev_clips: int) -> dict[str, str]:
    """The run's hyper-parameters as flat params: training.*, augmentation.*, data sizes."""
    return {
        **flat_params(scope.training.model_dump(mode="json"), "training"),
        **flat_params(scope.augmentation.model_dump(mode="json"), "augmentation"),
        "data.train_clips": str(train_clips),
        "data.dev_clips": str(dev_clips),
    }


def model_params(config: AcousticModelConfig) -> dict[str, str]:
    """The trained architecture as flat model.* params (known once training chose it)."""
    return flat_params(asdict(config), "model")


@task(name="run-tags")
def run_tags(
    augmented_version: str,
    dataset_version: str,
    warm_start_from: str | None,
    flow_run_id: str | None,
) -> dict[str, str]:
    """Code version, data versions and the Prefect flow run (which makes start_run idempotent)."""
    tags = {
        **code_version(),
        "augmented_version": augmented_version,
        "dataset_version": dataset_version,
    }
    if warm_start_from:
        tags["warm_start_from"] = warm_start_from
    if flow_run_id:
        tags[FLOW_RUN_TAG] = flow_run_id
    return tags


def slice_headlines(slices: pd.DataFrame) -> dict[str, float]:
    """wer_/cer_ of clean, car and telephone (where present) from a slice table, for MLflow."""
    out = {}
    for cond in ("clean", "car", "telephone"):
        row = slices[(slices["slice"] == "condition") & (slices["value"] == cond)]
        if len(row):
            out[f"wer_{cond}"] = float(row["wer"].iloc[0])
            out[f"cer_{cond}"] = float(row["cer"].iloc[0])
    return out


@task(name="run-metrics")
def run_metrics(
    overall: Mapping[str, Mapping[str, float]], slices: pd.DataFrame, result: TrainResult
) -> dict[str, float]:
    """Final metrics: WER/CER per split, the headline slices, training speed and best dev WER."""
    metrics = {f"{split}_{m}": v[m] for split, v in overall.items() for m in ("wer", "cer")}
    metrics.update(slice_headlines(slices))
    metrics.update(
        {
            "train_utterances_per_second": result.utterances_per_second,
            "train_seconds": result.seconds,
            "best_dev_wer_greedy": result.best_dev_wer,
        }
    )
    return metrics


@task(name="registration-tags")
def registration_tags(tags: Mapping[str, str], decision: GateDecision) -> dict[str, str]:
    """The model version's tags: the run's, plus the gate's decision and reasons."""
    return {
        **tags,
        "promoted": str(decision.promote).lower(),
        "gate": " | ".join(decision.reasons)[:4000],
    }


@task(name="log-dataset-inputs")
def log_dataset_inputs(
    run_id: str, manifest: pd.DataFrame, data_dir: Path, version: str, dataset_version: str
) -> list[str]:
    """Each split of the augmented version as an MLflow dataset input of the run.

    Idempotent: MLflow keeps one input per dataset (name, digest) and context, so a second
    call logs nothing new. Returns the contexts logged.
    """
    import mlflow
    from mlflow.data.pandas_dataset import from_pandas
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    columns = [c for c in DATASET_COLUMNS if c in manifest.columns]
    inputs, contexts = [], []
    source = (data_dir / "manifest.csv").resolve().as_uri()
    for split, rows in manifest.groupby("split", sort=True):
        with warnings.catch_warnings():
            # a file: URI matches MLflow's local artifact source twice ("" and "file"
            # schemes); it warns that it picked that source, which is the one we mean
            warnings.filterwarnings("ignore", "The specified dataset source", UserWarning)
            dataset = from_pandas(rows[columns].reset_index(drop=True), source=source, name=version)
        tags = [
            InputTag(MLFLOW_DATASET_CONTEXT, str(split)),
            InputTag("dataset_version", dataset_version),
        ]
        inputs.append(DatasetInput(dataset._to_mlflow_entity(), tags))
        contexts.append(str(split))
    mlflow.MlflowClient().log_inputs(run_id, datasets=inputs)
    return contexts
