"""A small random recogniser registered and promoted as a scope's champion in its real MLflow
registry: what the tests of commands that need a champion (evaluate, bench decoding, the
labelling loop) start from, without training one."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from data_contracts.scoping import Scope


def register_champion(
    scope: Scope,
    folder: Path,
    transcripts: Sequence[str],
    *,
    int8: bool = False,
    tags: Mapping[str, str] | None = None,
    artifacts: Mapping[str, Path] | None = None,
) -> str:
    """Save a seeded random recogniser (a beam decoder over `transcripts`) to `folder`,
    register it from a finished run carrying `tags` and `artifacts` (MLflow artifact path ->
    local folder), promote it; its registry version."""
    import mlflow

    from models.ctc import AcousticModelConfig, CTCAcousticModel
    from models.decoder import BeamDecoder, WordLM
    from models.recognizer import Recognizer
    from tasks.registry import configure_mlflow, promote, register_model

    configure_mlflow(
        scope.state.url("mlflow_tracking_uri"),
        scope.registry.experiment,
        scope.state.path("mlflow_artifacts"),
    )
    torch.manual_seed(0)
    model = CTCAcousticModel(AcousticModelConfig(conv_channels=32, rnn_hidden=32, rnn_layers=1))
    lm = WordLM.from_transcripts(list(transcripts))
    Recognizer(model.eval(), BeamDecoder(lm), int8=int8).save(folder)
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(scope.registry.experiment)
    assert experiment is not None
    run = client.create_run(experiment.experiment_id, tags=dict(tags or {}))
    for artifact_path, local in (artifacts or {}).items():
        client.log_artifacts(run.info.run_id, str(local), artifact_path)
    client.set_terminated(run.info.run_id)
    name = scope.registry.model_name
    version = str(register_model.fn(run.info.run_id, folder, name, {}).version)
    promote.fn(name, version, "test champion")
    return version
