"""What a training run leaves in MLflow (SQLite under tmp_path, for real): flat params that
the compare view can use, the data splits as dataset inputs, a registered version with a
signature and an input example; and the non-idempotent writes made idempotent.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from data_contracts.scoping import Scope
from models.ctc import AcousticModelConfig, CTCAcousticModel
from models.decoder import BeamDecoder, WordLM
from models.recognizer import Recognizer

pytestmark = pytest.mark.slow

CONFIG = AcousticModelConfig(conv_channels=32, rnn_hidden=32, rnn_layers=1)


@pytest.fixture
def tracking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def _recognizer(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    lm = WordLM.from_transcripts(["play jazz", "call mom"])
    out = tmp_path / "recognizer"
    Recognizer(CTCAcousticModel(CONFIG).eval(), BeamDecoder(lm)).save(out)
    return out


def _manifest() -> pd.DataFrame:
    rows = [
        ("u1", "train", "play jazz", "clean"),
        ("u2", "train", "call mom", "car"),
        ("u3", "dev", "play jazz", "clean"),
        ("u4", "test", "call mom", "car"),
    ]
    return pd.DataFrame(
        [
            {"utterance_id": u, "audio_path": f"{u}.wav", "split": s, "transcript": t}
            | {"condition": c, "voice": "v1", "duration_s": 1.0}
            for u, s, t, c in rows
        ]
    )


def _start(tracking: str, tmp_path: Path, tags: dict[str, str]) -> str:
    from tasks.registry import start_run
    from tasks.tracking import run_params

    params = run_params.fn(Scope(), train_clips=2, dev_clips=1)
    return start_run.fn(tracking, "test", tmp_path / "artifacts", "train-aug1", tags, params)


def test_run_logs_flat_params_and_dataset_inputs(tracking: str, tmp_path: Path) -> None:
    import mlflow

    from tasks.registry import log_run_results
    from tasks.tracking import log_dataset_inputs, model_params

    run_id = _start(tracking, tmp_path, {"augmented_version": "aug1"})
    log_dataset_inputs.fn(run_id, _manifest(), tmp_path, "aug1", "ds1")
    log_run_results.fn(run_id, [], {"test_wer": 0.5}, [], model_params(CONFIG))

    run = mlflow.MlflowClient().get_run(run_id)
    params = run.data.params
    assert params["training.learning_rate"] == str(Scope().training.learning_rate)
    assert params["training.batch_size"] == str(Scope().training.batch_size)
    assert params["augmentation.snr_db_min"] == str(Scope().augmentation.snr_db_min)
    assert params["model.rnn_hidden"] == "32"
    assert params["data.train_clips"] == "2"
    assert not any(v.startswith("{") and len(v) > 2 for v in params.values())  # no JSON blobs
    found = mlflow.search_runs(
        experiment_names=["test"], filter_string="params.`training.learning_rate` = '0.002'"
    )
    assert list(found["run_id"]) == [run_id]

    inputs = run.inputs.dataset_inputs
    contexts = sorted(
        tag.value for i in inputs for tag in i.tags if tag.key == "mlflow.data.context"
    )
    assert contexts == ["dev", "test", "train"]
    assert {i.dataset.name for i in inputs} == {"aug1"}
    assert all(any(t.key == "dataset_version" and t.value == "ds1" for t in i.tags) for i in inputs)
    # logging the same inputs again adds nothing (safe to repeat)
    log_dataset_inputs.fn(run_id, _manifest(), tmp_path, "aug1", "ds1")
    assert len(mlflow.MlflowClient().get_run(run_id).inputs.dataset_inputs) == len(inputs)


def test_start_run_is_idempotent_per_flow_run(tracking: str, tmp_path: Path) -> None:
    from tasks.registry import FLOW_RUN_TAG

    first = _start(tracking, tmp_path, {FLOW_RUN_TAG: "flow-1"})
    again = _start(tracking, tmp_path, {FLOW_RUN_TAG: "flow-1"})
    other = _start(tracking, tmp_path, {FLOW_RUN_TAG: "flow-2"})
    assert again == first
    assert other != first


def test_registered_version_has_a_signature_and_registers_once(
    tracking: str, tmp_path: Path
) -> None:
    import mlflow

    from tasks.registry import register_model

    run_id = _start(tracking, tmp_path, {})
    recognizer = _recognizer(tmp_path)
    registered = register_model.fn(run_id, recognizer, "asr", {"dataset_version": "ds1"})
    info = mlflow.models.get_model_info(f"models:/asr/{registered.version}")
    assert info.signature is not None
    assert info.signature.inputs.input_names() == ["audio_base64"]
    assert info.signature.outputs.input_names() == ["transcript", "confidence"]
    assert info.saved_input_example_info is not None

    again = register_model.fn(run_id, recognizer, "asr", {"dataset_version": "ds1"})
    assert again.version == registered.version
    versions = mlflow.MlflowClient().search_model_versions("name = 'asr'")
    assert len(versions) == 1


def test_logging_results_twice_keeps_one_point_per_step(tracking: str, tmp_path: Path) -> None:
    import mlflow

    from tasks.registry import log_run_results

    run_id = _start(tracking, tmp_path, {})
    history = [
        {"step": s, "epoch": 0, "train_loss": 3.0 / s, "dev_wer_greedy": 0.9, "lr": 1e-3}
        | {"elapsed_s": 2.0 * s}
        for s in (5, 10)
    ]
    for _ in range(2):  # as a retry of the task would
        log_run_results.fn(run_id, history, {"test_wer": 0.5}, [])
    client = mlflow.MlflowClient()
    assert [m.step for m in client.get_metric_history(run_id, "train_loss")] == [5, 10]
    assert len(client.get_metric_history(run_id, "test_wer")) == 1
    assert client.get_run(run_id).info.status == "FINISHED"
