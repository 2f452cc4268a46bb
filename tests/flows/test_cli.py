"""The `voicecycle` command as a user runs it: --help on every command, the README's command
names, and `ingest --json` and `rollback` against a real local Prefect server it starts."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from flows.cli import app, main

REPO = Path(__file__).resolve().parents[2]
COMMANDS = sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
README_COMMANDS = {
    "run", "ingest", "augment", "train", "rollback", "package", "serve", "simulate",
    "monitor", "retrain", "story", "deploy", "validate-scope", "server", "bench",
    "evaluate", "hot-words", "label", "team",
}  # fmt: skip


def _voicecycle(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        cwd=REPO,
        text=True,
        capture_output=True,
        timeout=timeout,
    )


def _session_server_port() -> int:
    """The port of the session's test Prefect server (`prefect_server`)."""
    from urllib.parse import urlsplit

    from prefect.settings import PREFECT_API_URL

    port = urlsplit(str(PREFECT_API_URL.value())).port
    assert port is not None
    return port


def _scope_file(tmp_path: Path) -> Path:
    """A scope with all state under tmp_path/ws but its Prefect server: the session's test
    server (`prefect_server`), as another command of the same workspace would have left it
    running (its port and PREFECT_HOME), so the commands reuse it and start none."""
    state = {
        "workspace": str(tmp_path / "ws"),
        "prefect_port": _session_server_port(),
        "prefect_home": os.environ["PREFECT_HOME"],
    }
    scope = tmp_path / "scope.yaml"
    scope.write_text(yaml.safe_dump({"state": state}))
    return scope


def test_the_readme_commands_are_the_commands() -> None:
    readme = (REPO / "README.md").read_text()
    assert set(COMMANDS) == README_COMMANDS
    assert all(f"voicecycle {c}" in readme for c in COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_has_help(command: str) -> None:
    done = CliRunner().invoke(app, [command, "--help"])
    assert done.exit_code == 0, done.output
    assert "Usage: " in done.output
    group = typer.main.get_command(app).commands[command]  # type: ignore[attr-defined]
    # a group (`hot-words update|show`): every subcommand takes the scope
    for sub in getattr(group, "commands", {None: None}):
        done = CliRunner().invoke(app, [command, *([sub] if sub else []), "--help"])
        assert done.exit_code == 0 and "--scope" in done.output, done.output


def test_top_level_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    listed = capsys.readouterr().out
    assert all(c in listed for c in COMMANDS)


def test_unknown_command_and_missing_option_are_usage_errors() -> None:
    assert main(["no-such-command"]) == 2
    assert main(["augment"]) == 2  # --dataset-version is required


def test_missing_scope_file_is_one_message_without_traceback(tmp_path: Path) -> None:
    done = _voicecycle("monitor", "--scope", str(tmp_path / "nope.yaml"), timeout=60)
    assert done.returncode == 2
    assert "scope file not found" in done.stderr and "Traceback" not in done.stderr


def test_invalid_scope_exits_2_naming_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "scope.yaml"
    bad.write_text("targets: {wer_car: -1}\n")
    done = _voicecycle("validate-scope", "--scope", str(bad), timeout=60)
    assert done.returncode == 2
    assert "targets.wer_car" in done.stderr and "Traceback" not in done.stderr


def test_debug_shows_the_traceback_of_an_expected_failure(tmp_path: Path) -> None:
    bad = tmp_path / "scope.yaml"
    bad.write_text("targets: {wer_car: -1}\n")
    done = _voicecycle("--debug", "validate-scope", "--scope", str(bad), timeout=60)
    assert done.returncode == 2
    assert "targets.wer_car" in done.stderr and "Traceback" in done.stderr


def test_help_documents_the_exit_codes() -> None:
    done = CliRunner().invoke(app, ["--help"])
    assert done.exit_code == 0
    assert "Exit codes" in done.output and "--debug" in done.output


def _scope_with(tmp_path: Path, **state: object) -> Path:
    scope = tmp_path / "scope.yaml"
    scope.write_text(yaml.safe_dump({"state": {"workspace": str(tmp_path / "ws"), **state}}))
    return scope


def test_an_unreachable_prefect_server_is_one_message_exit_3(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    scope = _scope_with(tmp_path, prefect_api_url=f"http://127.0.0.1:{port}/api")
    done = _voicecycle("monitor", "--scope", str(scope), timeout=60)
    assert done.returncode == 3, done.stderr[-2000:]
    assert f"127.0.0.1:{port}" in done.stderr and "does not answer" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_taken_prefect_port_is_one_message_exit_5(tmp_path: Path) -> None:
    import http.server
    import threading

    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:  # answers every request 501: not a Prefect server
        scope = _scope_with(tmp_path, prefect_port=other.server_address[1])
        done = _voicecycle("monitor", "--scope", str(scope), timeout=60)
    finally:
        other.shutdown()
        other.server_close()
    assert done.returncode == 5, done.stderr[-2000:]
    assert "state.prefect_port" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.usefixtures("prefect_server")
def test_the_prefect_server_of_another_workspace_is_not_reused(tmp_path: Path) -> None:
    """The port answers for a real Prefect server with its database in another PREFECT_HOME
    (the session's test server): this workspace's runs must not land there."""
    port = _session_server_port()
    scope = _scope_with(tmp_path, prefect_port=port)
    done = _voicecycle("server", "start", "--scope", str(scope), timeout=60)
    assert done.returncode == 5, done.stderr[-2000:]
    assert f"port {port} (state.prefect_port)" in done.stderr
    assert os.environ["PREFECT_HOME"] in done.stderr  # names where that server keeps its runs
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "ws" / "run" / "prefect-server.pid").exists()  # started nothing
    status = _voicecycle("server", "status", "--scope", str(scope), timeout=60)
    assert status.returncode == 5, status.stdout + status.stderr[-2000:]
    assert "running" not in status.stdout  # it is not this workspace's server
    assert os.environ["PREFECT_HOME"] in status.stderr and "Traceback" not in status.stderr


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_server")
def test_ingest_json_accepts_good_and_rejects_bad_manifests(tmp_path: Path) -> None:
    from tasks.synthesis import build_corpus

    scope = _scope_file(tmp_path)
    data = tmp_path / "data"
    build_corpus(data, 6, seed=3)
    good = _voicecycle(
        "ingest", "--scope", str(scope), "--manifest", str(data / "manifest.csv"), "--json"
    )
    assert good.returncode == 0, good.stderr[-2000:]
    assert "temporary server" not in good.stderr  # ran on the scope's own server
    summary = json.loads(good.stdout)
    assert summary["accepted"] == 6 and summary["quarantined"] == []
    assert summary["dataset_version"].startswith("ds-")

    broken = data / "broken.csv"
    rows = (data / "manifest.csv").read_text().splitlines()
    broken.write_text(
        "\n".join([rows[0], rows[1].replace("audio/", "audio/missing-"), rows[2]]) + "\n"
    )
    bad = _voicecycle("ingest", "--scope", str(scope), "--manifest", str(broken), "--json")
    assert bad.returncode == 1
    rejected = json.loads(bad.stdout)
    assert rejected["dataset_version"] is None
    assert rejected["quarantined"][0]["row"] == 0
    assert "missing audio file" in rejected["quarantined"][0]["reason"]
    assert "ingestion failed" in bad.stderr
    assert "Traceback" not in bad.stderr  # Prefect logs the failure, without its traceback
    versions = sorted(p.name for p in (tmp_path / "ws" / "datasets").iterdir())
    assert versions == [summary["dataset_version"]]  # nothing stored changed

    # the usual NeMo layout: absolute audio paths outside the manifest's folder
    elsewhere = tmp_path / "nemo"
    elsewhere.mkdir()
    audio = sorted((data / "audio").glob("*.wav"))[0]
    line = {"audio_filepath": str(audio), "text": "play jazz", "duration": 1.0}
    (elsewhere / "train.jsonl").write_text(json.dumps(line) + "\n")
    nemo = _voicecycle(
        "ingest", "--scope", str(scope), "--manifest", str(elsewhere / "train.jsonl"), "--json"
    )
    assert nemo.returncode == 1, nemo.stderr[-2000:]
    reason = json.loads(nemo.stdout)["quarantined"][0]["reason"]
    assert "outside the data root" in reason and "--data-root" in reason, reason
    assert "Traceback" not in nemo.stderr

    no_champion = _voicecycle("package", "--scope", str(scope), "--no-build")
    assert no_champion.returncode == 4, no_champion.stderr[-2000:]
    assert "no champion" in no_champion.stderr and "Traceback" not in no_champion.stderr


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_server")
def test_rollback_puts_the_previous_champion_where_the_service_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`voicecycle rollback` moves the alias and makes the restored champion the BentoML
    store's `latest`, which the running service follows."""
    import mlflow
    import torch

    from data_contracts.scoping import load_scope
    from models.ctc import AcousticModelConfig, CTCAcousticModel
    from models.recognizer import Recognizer
    from tasks.registry import CHAMPION, alias_version, configure_mlflow, promote, register_model

    scope_file = _scope_file(tmp_path)
    scope = load_scope(scope_file)
    uri = scope.state.url("mlflow_tracking_uri")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    configure_mlflow(uri, scope.registry.experiment, scope.state.path("mlflow_artifacts"))
    name = scope.registry.model_name
    experiment = mlflow.get_experiment_by_name(scope.registry.experiment)
    assert experiment is not None
    versions = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        saved = tmp_path / f"rec-{seed}"
        Recognizer(
            CTCAcousticModel(AcousticModelConfig(conv_channels=32, rnn_hidden=32, rnn_layers=1))
        ).save(saved)
        run = mlflow.MlflowClient().create_run(experiment.experiment_id)
        versions.append(register_model.fn(run.info.run_id, saved, name, {}).version)
        promote.fn(name, versions[-1], "test")
    done = _voicecycle("rollback", "--scope", str(scope_file))
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"version {versions[1]} -> {versions[0]}" in done.stdout
    assert "temporary server" not in done.stderr
    assert alias_version(name, CHAMPION) == versions[0]
    latest = subprocess.run(
        [
            sys.executable,
            "-c",
            "import bentoml, sys; "
            "print(bentoml.models.get(sys.argv[1] + ':latest').info.metadata"
            "['registry_version'])",
            name,
        ],
        env={**os.environ, "BENTOML_HOME": str(scope.state.path("bentoml_home"))},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert latest.stdout.strip() == versions[0], latest.stderr[-2000:]
