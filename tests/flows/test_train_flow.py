"""The train flow for real on a tiny generated dataset: feature caching and evaluation fan
out as one task run per shard on the scope's task runner with the results of a single pass
(features, WERs), and the MLflow run
holds flat params, the splits as dataset inputs and a registered version with a signature.
"""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

import pandas as pd
import pytest
import torch

from data_contracts.scoping import Scope
from tests.conftest import tiny_scope

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_server")]


def _scope(tmp_path: Path) -> Scope:
    base = tiny_scope(tmp_path / "ws", n_utterances=48, n_voices=8)
    return base.model_copy(
        update={
            "training": base.training.model_copy(
                update={"profile": "smoke", "max_minutes": 0.1, "eval_every_steps": 5}
            ),
            "runtime": base.runtime.model_copy(
                update={"task_runner": "processes", "max_workers": 2}
            ),
        }
    )


def _task_runs(parent: UUID, flow_name: str, task_name: str) -> int:
    """Completed runs of task_name inside the subflows called flow_name of a flow run."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    with get_client(sync_client=True) as client:
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent])
            )
        )
        flow_ids = {f.id: f.name for f in client.read_flows()}
        wanted = [c.id for c in children if flow_ids.get(c.flow_id) == flow_name]
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": wanted}))
    return sum(1 for r in runs if r.name.startswith(task_name) and r.state.is_completed())


def test_train_flow_fans_out_evaluation_and_tracks_the_run(tmp_path: Path) -> None:
    import mlflow

    from flows.augment import augment
    from flows.ingest import ingest
    from flows.train import train
    from models.recognizer import Recognizer
    from tasks.augmentation import load_augmented
    from tasks.error_analysis import evaluation_rows
    from tasks.feature_cache import cache_feature_shard, load_feature_cache
    from tasks.inference import prediction_frame, transcribe_manifest

    scope = _scope(tmp_path)
    augmented = augment(scope, ingest(scope))
    state = train(scope, augmented, return_state=True)
    result = state.result()

    # evaluation: one task run per shard (clips in whole 32-clip batches), in the Prefect UI
    data_dir = scope.state.path("augmented_dir") / augmented
    rows = evaluation_rows(load_augmented(data_dir), scope.training.seed)
    assert len(rows) > 32  # enough for two shards
    parent = state.state_details.flow_run_id
    assert _task_runs(parent, "evaluate-recognizer", "transcribe-shard") == 2

    # features: one task run per shard, and the same features as one pass
    assert _task_runs(parent, "cache-features", "cache-features-shard") == 2
    manifest = load_augmented(data_dir)
    one_pass = load_feature_cache(
        cache_feature_shard.fn(manifest, data_dir, tmp_path / "one-pass.pt")
    )
    cached = load_feature_cache(scope.state.path("features_dir") / f"{augmented}.pt")
    assert cached.ids == one_pass.ids and cached.transcripts == one_pass.transcripts
    assert all(torch.equal(a, b) for a, b in zip(cached.features, one_pass.features, strict=True))

    # the same predictions as one pass over the clips in this process
    run_dir = scope.state.path("runs_dir") / str(result["run_id"])
    recognizer = Recognizer.load(run_dir / "recognizer")
    single = prediction_frame(transcribe_manifest(recognizer, rows, data_dir, progress=False))
    logged = pd.read_csv(run_dir / "error_analysis" / "predictions.csv", keep_default_na=False)
    assert list(logged["utterance_id"]) == list(single["utterance_id"])
    assert list(logged["hypothesis"].astype(str)) == list(single["hypothesis"].astype(str))

    # MLflow: flat params, dataset inputs per split, a version with a signature
    mlflow.set_tracking_uri(scope.state.url("mlflow_tracking_uri"))
    run = mlflow.MlflowClient().get_run(str(result["run_id"]))
    assert run.data.params["training.learning_rate"] == str(scope.training.learning_rate)
    assert run.data.params["augmentation.snr_db_max"] == str(scope.augmentation.snr_db_max)
    assert run.data.params["model.rnn_hidden"] == "64"  # the smoke profile's size
    contexts = {
        t.value for i in run.inputs.dataset_inputs for t in i.tags if t.key == "mlflow.data.context"
    }
    assert contexts == set(rows["split"])
    assert {i.dataset.name for i in run.inputs.dataset_inputs} == {augmented}
    name = scope.registry.model_name
    info = mlflow.models.get_model_info(f"models:/{name}/{result['model_version']}")
    assert info.signature is not None
    assert run.data.tags["augmented_version"] == augmented

    # a second round: the cache is reused, the champion is evaluated on the same shards
    second = train(scope, augmented, return_state=True)
    again = second.result()
    parent = second.state_details.flow_run_id
    assert _task_runs(parent, "cache-features", "cache-features-shard") == 0
    assert _task_runs(parent, "evaluate-recognizer", "transcribe-shard") == 4  # new + champion
    assert again["run_id"] != result["run_id"]
    assert int(str(again["model_version"])) == int(str(result["model_version"])) + 1
