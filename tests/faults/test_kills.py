"""Kills and recovery: a trainer killed mid-run leaves no MLflow run RUNNING forever."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from tasks.registry import OWNER_TAG, STALE_TAG, configure_mlflow, start_run


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_run_left_running_by_a_killed_trainer_is_marked_killed_at_the_next_start(
    tmp_path: Path,
) -> None:
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment_id = configure_mlflow(uri, "faults", tmp_path / "artifacts")
    client = mlflow.MlflowClient()
    host = socket.gethostname()
    killed = client.create_run(experiment_id, tags={OWNER_TAG: f"{host}:{_dead_pid()}"})
    alive = client.create_run(experiment_id, tags={OWNER_TAG: f"{host}:{os.getpid()}"})
    elsewhere = client.create_run(experiment_id, tags={OWNER_TAG: "another-host:1"})

    new_id = start_run.fn(uri, "faults", tmp_path / "artifacts", "train-next", {}, {"a": "1"})

    def status(run_id: str) -> str:
        return str(client.get_run(run_id).info.status)

    assert status(killed.info.run_id) == "KILLED"
    assert "gone" in client.get_run(killed.info.run_id).data.tags[STALE_TAG]
    assert status(alive.info.run_id) == "RUNNING"  # a live trainer is not touched
    assert status(elsewhere.info.run_id) == "RUNNING"  # nor another machine's
    assert client.get_run(new_id).data.tags[OWNER_TAG] == f"{host}:{os.getpid()}"
    # a killed run can still be continued (`voicecycle train --resume RUN_ID` logs to it)
    client.log_metric(killed.info.run_id, "resumed", 1.0)
    assert client.get_run(killed.info.run_id).data.metrics["resumed"] == 1.0
