"""The tiny cycle on the team profile, every server a real process on 127.0.0.1: PostgreSQL
(created in the workspace), a Prefect server on it, an `mlflow server` on it with served
artifacts, a Dask scheduler with two workers, two Prefect workers, and two service replicas
sharing the prediction log on Postgres. `voicecycle run` (training as a 2-process DDP job)
and `monitor` run unchanged on it; two promotions at once leave one champion.

One `team up` serves every check (its servers are the expensive part): the cycle, the
replicas, the log, the registry contest and monitoring run in sequence on it.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
import yaml

from data_contracts.scoping import Scope
from tests.conftest import tiny_scope
from tests.helpers import last_json, postgres_folder, processes_over

pytestmark = [pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
CONCURRENCY = 8
PER_REPLICA = 16  # 32 predictions: a monitoring window of 30


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def _serving_port() -> int:
    """A free port whose successor is free too (the second replica's)."""
    for _ in range(50):
        (port,) = _free_ports(1)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise AssertionError("no two adjacent free ports")


def _team_scope(workspace: Path) -> Scope:
    base = tiny_scope(workspace, n_utterances=24, n_voices=6)
    prefect, mlflow, dask, pg, evidently = _free_ports(5)
    return base.model_copy(
        update={
            "training": base.training.model_copy(
                update={
                    "profile": "smoke",
                    "max_minutes": 0.15,
                    "eval_every_steps": 5,
                    "processes": 2,  # the training step as a DDP job under torchrun (gloo)
                }
            ),
            "serving": base.serving.model_copy(
                update={"port": _serving_port(), "workers": 1, "reload_poll_seconds": 2.0}
            ),
            "monitoring": base.monitoring.model_copy(update={"window": 30, "min_window": 20}),
            "runtime": base.runtime.model_copy(
                update={
                    "task_runner": "dask",
                    "max_workers": 2,
                    "prefect_workers": 2,
                    "service_replicas": 2,
                }
            ),
            "state": base.state.model_copy(
                update={
                    "credentials_file": Path("credentials.yaml"),
                    "prediction_log_url": (
                        f"postgresql+psycopg://team:{{TEAM_DB_PASSWORD}}@127.0.0.1:{pg}/predictions"
                    ),
                    "prefect_api_url": f"http://127.0.0.1:{prefect}/api",
                    "mlflow_tracking_uri": f"http://127.0.0.1:{mlflow}",
                    "dask_scheduler": f"tcp://127.0.0.1:{dask}",
                    "evidently_port": evidently,  # `voicecycle run` starts the UI
                }
            ),
        }
    )


@pytest.fixture(scope="module")
def team() -> Iterator[tuple[Scope, Path]]:
    """The team's servers up for the module's tests, stopped (and their state removed) after."""
    root = postgres_folder("voicecycle-team-")
    scope = _team_scope(root / "ws")
    scope_file = root / "scope.team.yaml"
    scope_file.write_text(yaml.safe_dump(scope.model_dump(mode="json")))
    try:
        up = _voicecycle(scope_file, "team", "up")
        assert "service replicas: after `voicecycle run`" in up.stdout
        yield scope, scope_file
    finally:
        down = subprocess.run(
            [sys.executable, "-m", "flows.cli", "team", "down", "--scope", str(scope_file)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
        left = processes_over(scope.state.path("evidently_workspace"))
        shutil.rmtree(root, ignore_errors=True)
    assert down.returncode == 0 and "postgres" in down.stdout, down.stderr[-2000:]
    assert "evidently-ui" in down.stdout and not left, left  # nothing of the team left


def _voicecycle(scope_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", *args, "--scope", str(scope_file)],
        cwd=REPO,
        text=True,
        capture_output=True,
        timeout=900,
    )
    assert done.returncode == 0, f"{args}: {done.stdout[-1500:]}\n{done.stderr[-3000:]}"
    return done


def _wav(seed: int) -> bytes:
    import io

    rng = np.random.default_rng(seed)
    t = np.arange(16000) / 16000
    audio = 0.1 * np.sin(2 * np.pi * (200 + 50 * seed % 300) * t) + 0.01 * rng.standard_normal(
        16000
    )
    buf = io.BytesIO()
    sf.write(buf, audio.astype(np.float32), 16000, format="WAV")
    return buf.getvalue()


# the module's servers come up in this test's setup: under CI's load (five test processes on two
# cores) setup and call took 82 s + 461 s, close to the suite's 600 s (alone: 29 s + 187 s)
@pytest.mark.timeout(1200)
def test_the_cycle_runs_unchanged_on_the_team_servers(team: tuple[Scope, Path]) -> None:
    from deployments.team import replica_urls

    scope, scope_file = team
    ran = _voicecycle(scope_file, "run")
    assert "temporary server" not in ran.stderr  # the scope's Prefect server, never a throwaway
    assert "The cycle finished." in ran.stdout
    _check_servers_hold_the_cycle(scope)

    # the second replica (the first came with `run`), same store and champion
    urls = replica_urls(scope)
    again = _voicecycle(scope_file, "team", "up").stdout  # keeps what runs, adds the replica
    assert f"service replicas: {urls[1]}" in again
    versions = {httpx.get(u + "/metadata", timeout=10).json()["model_version"] for u in urls}
    assert len(versions) == 1
    status = json.loads(_voicecycle(scope_file, "team", "status").stdout)
    assert status == dict.fromkeys(status, True), status
    assert {f"service {u}" for u in urls} <= set(status)

    # two writers at concurrency 8: every answered request is in the Postgres log, once
    from data_contracts.prediction_store import PredictionStore

    store = PredictionStore(scope.state.url("prediction_log_url"))
    before = store.count()

    def send(k: int) -> str:
        url = urls[k % len(urls)]
        files = {"audio": ("q.wav", _wav(k), "audio/wav")}
        resp = httpx.post(f"{url}/transcribe", files=files, data={"client": "{}"}, timeout=60)
        assert resp.status_code == 200, resp.text
        return str(resp.json()["request_id"])

    with ThreadPoolExecutor(CONCURRENCY * len(urls)) as pool:
        answered = list(pool.map(send, range(PER_REPLICA * len(urls))))
    logged = store.read()
    store.close()
    assert store.is_sqlite is False
    assert len(logged) - before == len(answered) == PER_REPLICA * len(urls)
    assert set(answered) <= set(logged["request_id"])
    assert logged["request_id"].is_unique

    # two promotions at once through the tracking server, serialised by a Postgres advisory
    # lock on the team's cluster: one champion, the other version recorded with the reason
    from tasks.registry import registry_lock_url
    from tests.team.promotion_contest import assert_one_champion, contest

    lock_url = registry_lock_url(scope)
    assert lock_url.startswith("postgresql")
    assert_one_champion(contest(scope.state.url("mlflow_tracking_uri"), lock_url, "contest"))

    # monitoring reads the Postgres log and the reference from the tracking server
    checked = last_json(_voicecycle(scope_file, "monitor", "--no-trigger").stdout)
    assert checked["window"] == scope.monitoring.window
    assert (scope.state.path("reports_dir") / "drift" / "drift_report.html").is_file()


def _check_servers_hold_the_cycle(scope: Scope) -> None:
    """Prefect (Postgres) has the flow runs; MLflow (Postgres + served artifacts) the champion;
    the Dask scheduler ran the fan-out."""
    import psycopg
    from distributed import Client
    from sqlalchemy.engine import make_url

    from deployments.postgres import MLFLOW_DB, PREFECT_DB

    log_url = make_url(scope.state.url("prediction_log_url"))
    conninfo = (
        f"host={log_url.host} port={log_url.port} user={log_url.username} "
        f"password={log_url.password}"
    )
    with psycopg.connect(f"{conninfo} dbname={PREFECT_DB}") as conn:
        flows = {r[0] for r in conn.execute("SELECT name FROM flow").fetchall()}
        completed = conn.execute(
            "SELECT count(*) FROM flow_run WHERE state_type = 'COMPLETED'"
        ).fetchone()
    assert {"full-cycle", "ingest", "augment", "train"} <= flows
    assert completed is not None and completed[0] >= 4
    with psycopg.connect(f"{conninfo} dbname={MLFLOW_DB}") as conn:
        aliases = conn.execute("SELECT alias FROM registered_model_aliases").fetchall()
        runs = conn.execute("SELECT artifact_uri FROM runs").fetchall()
    assert ("champion",) in aliases
    assert runs and all(uri.startswith("mlflow-artifacts:") for (uri,) in runs)
    with psycopg.connect(f"{conninfo} dbname={MLFLOW_DB}") as conn:
        processes = conn.execute(
            "SELECT value FROM params WHERE key = 'training.processes'"
        ).fetchall()
    assert processes == [("2",)]
    # the training step ran as one DDP job whose two ranks ended with the same weights
    from tasks.distributed import rank_digests

    runs_dir = scope.state.path("runs_dir")
    jobs = [rank_digests(d) for d in runs_dir.iterdir() if any(d.glob("ddp-rank*.json"))]
    assert len(jobs) == 1 and set(jobs[0]) == {0, 1}, jobs
    assert jobs[0][0] == jobs[0][1]
    served = scope.state.path("mlflow_artifacts").resolve()
    assert any(served.rglob("MLmodel")), "the tracking server stores the model's artifacts"

    address = scope.state.address("dask_scheduler")
    with Client(address, timeout=10) as client:
        assert len(client.scheduler_info(n_workers=-1)["workers"]) == 2
        ran = client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.transition_counter)
    assert ran > 0, "the fan-out ran on the Dask cluster"


def test_a_killed_team_prefect_server_leaves_nothing_half_done_and_a_rerun_completes(
    team: tuple[Scope, Path],
) -> None:
    """On the team's servers (bench/kills.py, as on the local profile): the Prefect server on
    Postgres SIGKILLed while `voicecycle ingest` works. `team up` brings it back, its sweep ends
    the killed run Crashed with why, nothing is half-published, and the rerun completes."""
    from bench.kills import kill_prefect_during_ingest

    scope, scope_file = team
    server = kill_prefect_during_ingest(
        scope, scope_file, ("team", "up"), timeout_s=600, client_retries=3
    )
    after = server["after_kill"]
    assert not after["ended_before_kill"] and after["exit"] != 0, server
    assert "Traceback" not in after["last_line"], server
    assert after["partial"] == [] and server["partial_versions"] == 0, server
    assert after["versions"] == [], server  # the killed run published nothing
    assert server["rerun_exit"] == 0 and server["rerun_version"] is not None, server
    assert server["open_runs_after_restart"] == [], server
    crashed = server["crashed_after_restart"]
    assert crashed and all("is gone" in run["message"] for run in crashed), server
    assert any("marked Crashed" in line for line in server["sweep_said"]), server


def test_a_killed_team_worker_leaves_the_champion_and_a_rerun_completes(
    team: tuple[Scope, Path],
) -> None:
    """On the team's servers, after the cycle above made a champion: a Prefect worker SIGKILLed
    with its flow-run process while a retrain trains. `team up` brings it back, its sweep ends
    the retrain and its train subflow Crashed with why, the champion and the registry are as
    they were, and a manual retrain completes."""
    from bench.kills import kill_worker_during_retrain
    from deployments.team import worker_names

    scope, scope_file = team
    # a retrain long enough to be killed while it trains (same servers and workspace)
    training = scope.training.model_copy(update={"max_minutes": 0.5, "eval_every_steps": 2})
    longer = scope.model_copy(update={"training": training})
    longer_file = scope_file.with_name("scope.retrain.yaml")
    longer_file.write_text(yaml.safe_dump(longer.model_dump(mode="json")))
    worker = kill_worker_during_retrain(
        longer, longer_file, ("team", "up"), worker_names(scope), timeout_s=600
    )
    assert worker["killed_mid_training"] and worker["processes_killed"] >= 2, worker
    assert worker["open_runs_after_restart"] == [], worker
    assert len(worker["crashed_runs"]) >= 2, worker  # the retrain run and its train subflow
    assert all("is gone" in r["message"] for r in worker["crashed_runs"]), worker
    after_kill = worker["registry_after_kill"]
    assert after_kill["champion"] == worker["champion_before"], worker
    assert after_kill["versions_without_metrics"] == [], worker
    assert worker["rerun_exit"] == 0 and worker["partial_versions"] == 0, worker
    after_rerun = worker["registry_after_rerun"]
    assert after_rerun["mlflow_running"] == [] and after_rerun["versions_without_metrics"] == []
    assert worker["open_runs_at_end"] == [], worker
    status = json.loads(_voicecycle(scope_file, "team", "status").stdout)
    assert all(status.values()), status  # every server back, the killed worker included
