"""The log faults on the team profile (issue 14, run there too): a real `bentoml serve` whose
prediction log is a real PostgreSQL cluster (deployments/postgres.py, as `voicecycle team up`
makes it). A worker killed under load loses no acknowledged prediction; with the database
down every request is a quick 503 `log_unavailable`, never an answer that was not logged;
when it is back the service logs again by itself, with no restart or reload. Two replicas
sharing that log and one model store soak in mixed traffic across a model switch (the
mechanism of `voicecycle bench faults --servers team`, shortened)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bench.faults import kill_worker_under_load, soak
from bench.harness import Server, free_port, make_store, start_tuned, stop_server
from bench.mutations import encode
from data_contracts.scoping import Scope
from deployments.postgres import postgres_target, start_postgres, stop_postgres
from tests.helpers import postgres_folder

pytestmark = pytest.mark.slow

WAV = encode("WAV", "PCM_16", 16000, 1, 1.0)


def logged_ids(server: Server) -> set[str]:
    return set(server.logged()["request_id"])


@dataclass
class TeamLog:
    replicas: list[Server]  # sharing the log and one model store
    scope: Scope  # the cluster's scope: where its data lives and the log's URL
    root: Path  # the store's root (make_store(root, version) adds a model both follow)

    @property
    def server(self) -> Server:
        return self.replicas[0]


@pytest.fixture(scope="module")
def team_log() -> Iterator[TeamLog]:
    root = postgres_folder("voicecycle-team-log-")
    url = f"postgresql+psycopg://vc:log-pw@127.0.0.1:{free_port()}/predictions"
    state = {"prediction_log_url": url, "postgres_dir": str(root / "postgres")}
    scope = Scope.model_validate({"state": {"workspace": str(root / "workspace"), **state}})
    start_postgres(scope, postgres_target(scope))
    replicas: list[Server] = []
    try:
        stored = make_store(root)
        for name in ("replica-1", "replica-2"):
            (root / name).mkdir()
            replicas.append(
                start_tuned(
                    stored, root / name, state, max_latency_ms=10_000, reload_poll_seconds=2
                )
            )
        yield TeamLog(replicas, scope, root)
    finally:
        for server in replicas:
            stop_server(server)
        stop_postgres(scope)
        shutil.rmtree(root, ignore_errors=True)


def _post(client: httpx.Client, url: str) -> httpx.Response:
    return client.post(f"{url}/transcribe", files={"audio": ("q.wav", WAV, "audio/wav")})


def test_a_worker_killed_under_load_loses_nothing_on_postgres(team_log: TeamLog) -> None:
    result = kill_worker_under_load(team_log.server, WAV)
    assert result["answered"] > 0, team_log.server.log_tail()
    assert result["lost"] == 0 and result["5xx"] == 0 and result["ok"], result


def test_the_database_down_gets_quick_503s_and_the_service_logs_again_when_it_is_back(
    team_log: TeamLog,
) -> None:
    server, url = team_log.server, team_log.server.url
    with httpx.Client(timeout=120) as client:
        before = _post(client, url)
        assert before.status_code == 200, before.text
        assert stop_postgres(team_log.scope)
        try:
            during = [_post(client, url) for _ in range(4)]
        finally:
            start_postgres(team_log.scope, postgres_target(team_log.scope))
        deadline = time.monotonic() + 60
        after = _post(client, url)
        while after.status_code != 200 and time.monotonic() < deadline:
            time.sleep(1)  # the pool reconnects by itself; nothing restarts the service
            after = _post(client, url)
    for response in during:  # how quickly: `voicecycle bench faults` measures it
        assert response.status_code == 503, response.text
        assert response.json()["code"] == "log_unavailable"
        assert response.headers["retry-after"]
    assert not {r.json()["request_id"] for r in during} & logged_ids(server)
    assert after.status_code == 200, (after.text, server.log_tail())
    logged = logged_ids(server)
    assert {before.json()["request_id"], after.json()["request_id"]} <= logged
    assert httpx.get(f"{url}/readyz", timeout=10).status_code == 200


def test_two_replicas_soak_through_a_model_switch_and_lose_or_duplicate_nothing(
    team_log: TeamLog,
) -> None:
    result = soak(team_log.replicas, team_log.root, minutes=0.6, switch_minutes=0.3, wav=WAV)
    tails = [server.log_tail() for server in team_log.replicas]
    assert result["answered"] > 0 and result["switches"] == 1, (result, tails)
    assert result["errors"] == 0 and result["lost"] == 0 and result["duplicated"] == 0, result
    for served in result["versions_by_server"]:  # each replica followed the store
        assert served[-1] == "2", (result, tails)
    assert result["growth"] is not None and len(result["growth_by_server"]) == 2, result
