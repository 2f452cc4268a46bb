"""One tiny real cycle: synthesised audio -> ingest -> augment -> train a few steps ->
evaluate -> register in MLflow (under tmp_path) -> package into BentoML -> a real
`bentoml serve` on 127.0.0.1 -> simulated traffic logged -> drift check -> a retrain round
(labelling batch, re-spoken new words, ingest, augment, warm-started training, gate)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import tiny_scope

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.usefixtures("prefect_server")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_tiny_cycle_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = tiny_scope(tmp_path / "ws", n_utterances=32, n_voices=8)
    scope = base.model_copy(
        update={
            "training": base.training.model_copy(
                update={"profile": "smoke", "max_minutes": 0.2, "eval_every_steps": 5}
            ),
            "serving": base.serving.model_copy(update={"port": _free_port()}),
            "monitoring": base.monitoring.model_copy(update={"window": 30, "min_window": 20}),
            "labelling": base.labelling.model_copy(update={"respeak_voices": 2}),
        }
    )
    scope_file = tmp_path / "scope.yaml"
    scope_file.write_text(yaml.safe_dump(scope.model_dump(mode="json")))
    for key in ("MLFLOW_TRACKING_URI", "BENTOML_HOME"):
        monkeypatch.delenv(key, raising=False)
    from deployments.local import configure_environment

    configure_environment(scope, api=False)  # MLflow and BentoML under tmp_path

    from deployments.local import start_service, stop_service
    from flows.full_cycle import full_cycle
    from flows.monitor import monitor
    from flows.retrain import retrain
    from flows.simulate import simulate
    from tasks.registry import CHAMPION, alias_version

    result: dict[str, Any] = full_cycle(scope)
    assert result["promoted"] is True  # bootstrap: the first model serves
    assert alias_version(scope.registry.model_name, CHAMPION) == result["model_version"]
    assert result["model_tag"].startswith(scope.registry.model_name + ":")
    assert (
        scope.state.path("runs_dir") / result["run_id"] / "error_analysis" / "error_analysis.html"
    ).is_file()

    try:
        url = start_service(scope, scope_file)
        sent = simulate(scope, "stable", count=30, seed=1, url=url + "/transcribe")
        assert sent["ok"] == sent["sent"] == 30
        assert sent["model_versions"] == [result["model_version"]]
        # the scope's monitoring state lives where the scope says
        assert not scope.state.path("monitoring_dir").joinpath("state.json").exists()
        check: dict[str, Any] = monitor(scope, trigger=False)
        assert check["window"] == 30
        assert 0.0 <= check["drift_share"] <= 1.0
        assert (scope.state.path("reports_dir") / "drift" / "drift_report.html").is_file()

        # a retrain round on what production brought (the simulator labels what it sent)
        again: dict[str, Any] = retrain(scope, reason="e2e: names the model never heard")
        assert again["labelling_batch"] is not None
        assert Path(again["labelling_batch"]).parent == scope.state.path("labelling_dir")
        assert any(c.startswith("added labelled production batch") for c in again["changes"])
        respoken = [c for c in again["changes"] if c.startswith("re-spoke")]
        assert respoken and "by 2 synthetic voices" in respoken[0]
        from tasks.ingestion import load_dataset

        grown = load_dataset(scope.state.path("datasets_dir") / again["dataset_version"])
        assert {"synthetic", "respoken"} <= set(grown["source"])
        assert grown["source"].str.startswith("labelled-").any()
        champion_now = alias_version(scope.registry.model_name, CHAMPION)
        if again["promoted"]:
            assert champion_now == again["model_version"]
        else:  # the gate said no: the champion stays, and the run says why
            assert champion_now == result["model_version"] and again["reasons"]
    finally:
        stop_service(scope)
