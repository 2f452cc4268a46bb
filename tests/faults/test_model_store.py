"""A registered model whose files are corrupt or missing: packaging refuses it with a clear
message (nothing reaches the BentoML store), and a corrupt model that does reach the store
leaves the running service on its model, /readyz up."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from bench.harness import make_store, start_tuned, stop_server
from bench.mutations import encode
from data_contracts.scoping import Scope
from flows.cli.failures import expected_exit


def _registered_champion(scope: Scope, tmp_path: Path) -> str:
    import mlflow

    from models.ctc import AcousticModelConfig, CTCAcousticModel
    from models.recognizer import Recognizer
    from tasks.registry import CHAMPION, configure_mlflow, register_model, start_run

    st, reg = scope.state, scope.registry
    tracking, artifacts = st.url("mlflow_tracking_uri"), st.path("mlflow_artifacts")
    configure_mlflow(tracking, reg.experiment, artifacts)
    run_id = start_run.fn(tracking, reg.experiment, artifacts, "train-x", {}, {"a": "1"})
    recognizer = tmp_path / "recognizer"
    Recognizer(CTCAcousticModel(AcousticModelConfig())).save(recognizer)
    version = register_model.fn(run_id, recognizer, reg.model_name, {}).version
    mlflow.MlflowClient().set_registered_model_alias(reg.model_name, CHAMPION, version)
    return version


@pytest.mark.parametrize("damage", ["truncated", "missing"])
def test_packaging_refuses_a_registered_model_whose_files_are_damaged(
    tmp_path: Path, damage: str
) -> None:
    from tasks.packaging import UnusableModel, import_champion

    scope = Scope().with_workspace(tmp_path / "ws")
    version = _registered_champion(scope, tmp_path)
    (weights,) = scope.state.path("mlflow_artifacts").rglob("weights.pt")
    if damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:1000])
    else:
        weights.unlink()

    # refused before BentoML is touched: this process's store is never written
    with pytest.raises(UnusableModel) as refused:
        import_champion.fn(scope, version)
    message = str(refused.value)
    assert f"version {version}" in message and "rollback" in message, message
    assert ("missing ['weights.pt']" in message) == (damage == "missing"), message
    assert expected_exit(refused.value) == 1  # the CLI prints it as one line, exit 1


@pytest.mark.slow
def test_a_corrupt_model_in_the_store_leaves_the_service_on_its_model(tmp_path: Path) -> None:
    server = start_tuned(make_store(tmp_path), tmp_path, reload_poll_seconds=0.5)
    try:
        make_store(tmp_path, version=2, corrupt=True)  # the newest in the store, unloadable
        deadline = time.monotonic() + 60
        while "model poll or audio purge failed" not in server.log_tail():
            assert time.monotonic() < deadline, server.log_tail()
            time.sleep(0.5)
        assert httpx.get(f"{server.url}/readyz", timeout=10).status_code == 200
        assert httpx.get(f"{server.url}/metadata", timeout=10).json()["model_version"] == "1"
        wav = encode("WAV", "PCM_16", 16000, 1, 1.0)
        answer = httpx.post(f"{server.url}/transcribe", files={"audio": wav}, timeout=60)
        assert answer.status_code == 200 and answer.json()["model_version"] == "1", answer.text
    finally:
        stop_server(server)
