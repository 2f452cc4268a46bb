"""Every server is an address in the scope: given one, the project uses it and starts nothing;
secrets come from the credentials file or the environment, never from the scope."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from data_contracts.scoping import Scope, load_scope
from deployments.addresses import TeamError, ensure_credentials
from deployments.local import configure_environment, prefect_api_url, start_server
from deployments.postgres import postgres_target

REPO = Path(__file__).resolve().parents[2]
PG_URL = "postgresql+psycopg://vc:{VC_DB_PASSWORD}@127.0.0.1:5999/predictions"


def _with_state(scope: Scope, **state: object) -> Scope:
    return scope.model_copy(update={"state": scope.state.model_copy(update=state)})


def test_team_scope_is_valid_and_names_every_server() -> None:
    scope = load_scope(REPO / "scope.team.yaml")
    st = scope.state
    assert scope.runtime.task_runner == "dask"
    assert scope.runtime.prefect_workers == 2
    assert scope.training.processes == 2  # training as a DDP job under torchrun
    assert st.prefect_api_url and st.prefect_api_url.startswith("http://127.0.0.1:")
    assert st.mlflow_tracking_uri.startswith("http://127.0.0.1:")
    assert st.dask_scheduler and st.dask_scheduler.startswith("tcp://127.0.0.1:")
    assert st.prediction_log_url.startswith("postgresql+psycopg://")
    # the secret is a placeholder: the repository holds none
    assert "{VOICECYCLE_DB_PASSWORD}" in st.prediction_log_url


def test_default_scope_keeps_the_embedded_servers(tmp_path: Path) -> None:
    scope = Scope().with_workspace(tmp_path)
    assert prefect_api_url(scope) == "http://127.0.0.1:4200/api"
    assert scope.state.address("dask_scheduler") is None
    assert scope.state.url("mlflow_tracking_uri").startswith("sqlite:///")


def test_a_given_prefect_address_is_used_and_nothing_is_started(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    scope = _with_state(
        Scope().with_workspace(tmp_path), prefect_api_url=f"http://127.0.0.1:{port}/api/"
    )
    configure_environment(scope)
    assert os.environ["PREFECT_API_URL"] == f"http://127.0.0.1:{port}/api"
    with pytest.raises(RuntimeError, match=f"127.0.0.1:{port}/api.*does not answer"):
        start_server(scope, timeout_s=5)
    assert not (scope.state.path("run_dir") / "prefect-server.pid").exists()


def test_secrets_come_from_the_credentials_file_then_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VC_DB_PASSWORD", raising=False)
    bare = _with_state(Scope().with_workspace(tmp_path), prediction_log_url=PG_URL)
    with pytest.raises(ValueError, match=r"state.prediction_log_url needs \['VC_DB_PASSWORD'\]"):
        bare.state.url("prediction_log_url")
    monkeypatch.setenv("VC_DB_PASSWORD", "from-env")
    assert ":from-env@" in bare.state.url("prediction_log_url")

    scope = _with_state(bare, credentials_file=Path("creds.yaml"))
    monkeypatch.delenv("VC_DB_PASSWORD")
    path = ensure_credentials(scope)
    assert path == (tmp_path / "creds.yaml").resolve()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    url = scope.state.url("prediction_log_url")
    secret = url.split(":")[2].split("@")[0]
    assert len(secret) >= 16 and secret in path.read_text()
    ensure_credentials(scope)  # a second call keeps the secret
    assert scope.state.url("prediction_log_url") == url
    pg = postgres_target(scope)
    assert (pg.host, pg.port, pg.user, pg.database) == ("127.0.0.1", 5999, "vc", "predictions")
    # the scope a flow receives (and the Prefect UI shows) still holds only the placeholder
    assert secret not in scope.model_dump_json()


def test_team_up_refuses_a_sqlite_prediction_log(tmp_path: Path) -> None:
    with pytest.raises(TeamError, match="prediction_log_url must be a postgresql"):
        postgres_target(Scope().with_workspace(tmp_path))


def test_the_mlflow_ui_line_names_a_tracking_server_by_its_address() -> None:
    from flows.cli.stages import mlflow_ui

    assert mlflow_ui("http://127.0.0.1:5055/") == "http://127.0.0.1:5055"
    local = mlflow_ui("sqlite:////tmp/ws/mlflow/mlflow.db")
    assert "mlflow ui --backend-store-uri sqlite:////tmp/ws/mlflow/mlflow.db" in local
    assert "--host 127.0.0.1" in local


def test_team_status_names_every_replica(tmp_path: Path) -> None:
    from deployments.team import team_status

    scope = load_scope(REPO / "scope.team.yaml").with_workspace(tmp_path / "ws")
    free = _free_port_pair()
    scope = scope.model_copy(update={"serving": scope.serving.model_copy(update={"port": free})})
    status = team_status(scope)
    replicas = {k: v for k, v in status.items() if k.startswith("service ")}
    # no service runs on these ports: both replicas listed, neither ready
    assert replicas == {
        f"service http://127.0.0.1:{free}": False,
        f"service http://127.0.0.1:{free + 1}": False,
    }


def _free_port_pair() -> int:
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = int(a.getsockname()[1])
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return port
    raise AssertionError("no two adjacent free ports")
