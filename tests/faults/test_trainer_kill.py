"""A real `voicecycle train` on the tiny scope, `kill -9`ed mid-epoch (after its first
checkpoint), then `voicecycle train --resume RUN_ID`: it continues from that checkpoint's
epoch and step, ends the MLflow run FINISHED, and no run stays RUNNING."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from data_contracts.scoping import Scope
from tests.conftest import tiny_scope

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_server")]

REPO = Path(__file__).resolve().parents[2]


def _scope(tmp_path: Path) -> Scope:
    from prefect.settings import get_current_settings

    base = tiny_scope(tmp_path / "ws", n_utterances=24, n_voices=6)
    training = base.training.model_copy(
        update={"profile": "smoke", "max_minutes": 0.5, "eval_every_steps": 2, "max_epochs": 400}
    )
    state = base.state.model_copy(update={"prefect_api_url": str(get_current_settings().api.url)})
    return base.model_copy(update={"training": training, "state": state})


def _train(scope_file: Path, version: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "train", "--augmented-version", version,
         "--scope", str(scope_file), *extra],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: kill -9 reaches its children too
    )  # fmt: skip


def test_a_trainer_killed_mid_epoch_resumes_from_its_last_checkpoint(tmp_path: Path) -> None:
    import mlflow

    from flows.augment import augment
    from flows.ingest import ingest

    scope = _scope(tmp_path)
    augmented = augment(scope, ingest(scope))
    scope_file = tmp_path / "scope.yaml"
    scope_file.write_text(yaml.safe_dump(scope.model_dump(mode="json"), sort_keys=False))
    runs = scope.state.path("runs_dir")

    trainer = _train(scope_file, augmented)
    deadline = time.monotonic() + 300
    while not list(runs.glob("*/last.pt")) and trainer.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.2)
    assert trainer.poll() is None, trainer.communicate()[0][-3000:]
    time.sleep(1.0)  # mid-epoch, between checkpoints
    os.killpg(trainer.pid, signal.SIGKILL)
    trainer.communicate(timeout=30)
    (last,) = runs.glob("*/last.pt")
    run_id = last.parent.name
    saved = torch.load(last, weights_only=True)

    mlflow.set_tracking_uri(scope.state.url("mlflow_tracking_uri"))
    client = mlflow.MlflowClient()
    assert client.get_run(run_id).info.status == "RUNNING"  # what the dead trainer left

    resumed = _train(scope_file, augmented, "--resume", run_id)
    out, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, out[-3000:]
    assert f"epoch {saved['epoch']}, step {saved['step']}" in out, out[-3000:]

    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(run_id, "dev_wer_greedy")]
    assert max(steps) > int(saved["step"]), steps  # trained on past the checkpoint
    experiment = client.get_experiment_by_name(scope.registry.experiment)
    running = client.search_runs(
        [experiment.experiment_id], filter_string="attributes.status = 'RUNNING'"
    )
    assert not running, [r.info.run_id for r in running]
