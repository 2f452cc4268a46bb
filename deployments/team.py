"""The team profile on one machine: the servers a team would share, each at the address the
scope names, started as real processes on 127.0.0.1 and stopped again.

- PostgreSQL (deployments/postgres.py): a cluster in `state.postgres_dir`, where
  `state.prediction_log_url` points, holding the prediction log, `prefect` and `mlflow`.
- Prefect server on that Postgres (asyncpg) at `state.prefect_api_url`, and
  `runtime.prefect_workers` process workers on the work pool.
- `mlflow server` with the Postgres backend store and served artifacts (under
  `state.mlflow_artifacts`) at `state.mlflow_tracking_uri`.
- a dask.distributed scheduler at `state.dask_scheduler` with `runtime.max_workers`
  single-threaded workers.

Secrets: the URLs name them as `{NAME}` placeholders; `team up` writes fresh ones into the
scope's `state.credentials_file` (mode 0600, in the workspace) when it is missing
(deployments/addresses.py). Pid files and logs are in `state.run_dir`, as for the local
runtime; nothing runs at import.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

from data_contracts.scoping import Scope
from deployments.addresses import TeamError, ensure_credentials, host_port, port_open
from deployments.local import (
    WORK_POOL,
    _healthy,
    _run_file,
    configure_environment,
    launch,
    prefect_api_url,
    server_healthy,
    service_url,
    stop_pidfile,
    sweep_orphaned_runs,
)
from deployments.postgres import (
    MLFLOW_DB,
    PREFECT_DB,
    Postgres,
    postgres_running,
    postgres_target,
    start_postgres,
    stop_postgres,
)


def _env(scope: Scope) -> dict[str, str]:
    configure_environment(scope)
    return {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}


def start_prefect(scope: Scope, pg: Postgres, timeout_s: float = 180.0) -> None:
    """The Prefect server on the team's Postgres, at state.prefect_api_url."""
    if scope.state.prefect_api_url is None:
        raise TeamError("the team profile needs state.prefect_api_url (http://127.0.0.1:PORT/api)")
    host, port = host_port(prefect_api_url(scope), "prefect_api_url")
    if server_healthy(scope):
        return
    env = _env(scope)
    env.pop("PREFECT_API_URL", None)
    env["PREFECT_API_DATABASE_CONNECTION_URL"] = pg.url("asyncpg", PREFECT_DB)
    cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port)]
    launch(scope, "prefect-server", cmd, env, lambda: server_healthy(scope), timeout_s)


def mlflow_healthy(scope: Scope) -> bool:
    return _healthy(scope.state.url("mlflow_tracking_uri").rstrip("/") + "/health")


def start_mlflow(scope: Scope, pg: Postgres, timeout_s: float = 180.0) -> None:
    """`mlflow server` on the team's Postgres, serving artifacts from state.mlflow_artifacts."""
    uri = scope.state.url("mlflow_tracking_uri")
    if not uri.startswith("http://"):
        raise TeamError(f"the team profile needs an http:// state.mlflow_tracking_uri, got {uri!r}")
    host, port = host_port(uri, "mlflow_tracking_uri")
    if mlflow_healthy(scope):
        return
    artifacts = scope.state.path("mlflow_artifacts").resolve()
    artifacts.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", host, "--port", str(port),
           "--backend-store-uri", pg.url("psycopg", MLFLOW_DB), "--serve-artifacts",
           "--artifacts-destination", artifacts.as_uri(), "--workers", "1"]  # fmt: skip
    env = _env(scope)
    env.pop("MLFLOW_TRACKING_URI", None)
    launch(scope, "mlflow-server", cmd, env, lambda: mlflow_healthy(scope), timeout_s)


def dask_workers(scope: Scope, timeout_s: float = 2.0) -> int:
    """Workers connected to the scope's Dask scheduler (0 when it does not answer)."""
    address = scope.state.address("dask_scheduler")
    if not address or not port_open(*host_port(address, "dask_scheduler")):
        return 0
    from distributed import Client

    try:
        with Client(address, timeout=timeout_s) as client:
            return len(client.scheduler_info(n_workers=-1)["workers"])
    except OSError:
        return 0


def start_dask(scope: Scope, n_workers: int, timeout_s: float = 120.0) -> None:
    """A dask scheduler at state.dask_scheduler and n_workers single-threaded workers."""
    address = scope.state.address("dask_scheduler")
    if not address:
        raise TeamError("the team profile needs state.dask_scheduler (tcp://127.0.0.1:PORT)")
    host, port = host_port(address, "dask_scheduler")
    env = _env(scope)
    if not port_open(host, port):
        cmd = [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", host,
               "--port", str(port), "--no-dashboard"]  # fmt: skip
        launch(scope, "dask-scheduler", cmd, env, lambda: port_open(host, port), timeout_s)
    if dask_workers(scope) >= n_workers:
        return
    cmd = [sys.executable, "-m", "distributed.cli.dask_worker", address, "--host", host,
           "--nworkers", str(n_workers), "--nthreads", "1", "--no-dashboard"]  # fmt: skip
    launch(scope, "dask-workers", cmd, env, lambda: dask_workers(scope) >= n_workers, timeout_s)


def worker_names(scope: Scope) -> list[str]:
    """The pid-file names of the Prefect workers (the first is the local runtime's own)."""
    n = scope.runtime.prefect_workers
    return ["prefect-worker", *(f"prefect-worker-{i}" for i in range(2, n + 1))]


def start_prefect_workers(scope: Scope) -> None:
    """runtime.prefect_workers process workers on the work pool (created once)."""
    from deployments.work_pool import ensure_work_pool

    env = _env(scope)
    ensure_work_pool()
    for name in worker_names(scope):
        if _alive(scope, name):
            continue
        cmd = [sys.executable, "-m", "prefect", "worker", "start", "--pool", WORK_POOL,
               "--type", "process", "--name", f"{scope.project.name}-{name}"]  # fmt: skip
        launch(scope, name, cmd, env, None, 0)


def _alive(scope: Scope, name: str) -> bool:
    import psutil

    pidfile = _run_file(scope, f"{name}.pid")
    return pidfile.is_file() and psutil.pid_exists(int(pidfile.read_text().strip()))


def replica_names(scope: Scope) -> list[str]:
    """Pid-file names of the service replicas after the first (the local runtime's own)."""
    return [f"service-{i}" for i in range(2, scope.runtime.service_replicas + 1)]


def replica_urls(scope: Scope) -> list[str]:
    """Every replica's base URL: serving.port, then the ports after it."""
    return [
        service_url(_on_port(scope, scope.serving.port + i))
        for i in range(scope.runtime.service_replicas)
    ]


def _on_port(scope: Scope, port: int) -> Scope:
    return scope.model_copy(update={"serving": scope.serving.model_copy(update={"port": port})})


def start_replicas(scope: Scope, scope_path: Path, timeout_s: float = 180.0) -> list[str]:
    """The service replicas after the first, on the ports after serving.port, sharing the
    prediction log and the BentoML store (each follows the same champion); their URLs.
    They need a model in the store: `voicecycle run` (or `package`) puts one there."""
    from deployments.local import service_command, service_ready, store_has_model

    if not replica_names(scope):
        return []
    configure_environment(scope)
    if not store_has_model(scope):
        raise TeamError(
            "the BentoML store has no model for the service replicas yet: "
            f"run `voicecycle run --scope {scope_path}` first"
        )
    urls = []
    for i, name in enumerate(replica_names(scope), start=1):
        replica = _on_port(scope, scope.serving.port + i)
        if not service_ready(replica):
            cmd = service_command(replica, scope_path)
            ready = functools.partial(service_ready, replica)
            launch(replica, name, cmd, _env(scope), ready, timeout_s)
        urls.append(service_url(replica))
    return urls


def team_up(scope: Scope, scope_path: Path | None = None, log: bool = True) -> dict[str, str]:
    """Start every team server the scope names (or keep the running ones); name -> address.
    PostgreSQL first, then Prefect, MLflow and Dask at once (each waits on its own start-up:
    migrations, imports), then the Prefect workers, then the sweep of flow runs a killed
    server or worker left Running (as at `server start`). With the scope's file and a model
    in the store, also the service replicas after the first."""
    ensure_credentials(scope)
    pg = postgres_target(scope)
    tiers = [
        [("postgres", lambda: start_postgres(scope, pg), f"{pg.host}:{pg.port}")],
        [
            ("prefect", lambda: start_prefect(scope, pg), prefect_api_url(scope)),
            ("mlflow", lambda: start_mlflow(scope, pg), scope.state.url("mlflow_tracking_uri")),
            ("dask", lambda: start_dask(scope, _dask_n(scope)), str(scope.state.dask_scheduler)),
        ],
        [("prefect workers", lambda: start_prefect_workers(scope), f"pool {WORK_POOL}")],
    ]
    up = {}
    for tier in tiers:
        if log:
            for name, _, where in tier:
                print(f"starting {name} ({where})", file=sys.stderr, flush=True)
        _all_at_once([start for _, start, _ in tier])
        up.update({name: where for name, _, where in tier})
    sweep_orphaned_runs(scope)  # what a killed server or worker left Running ends Crashed
    if scope_path is not None and replica_names(scope):
        from deployments.local import store_has_model

        if store_has_model(scope):
            up["service replicas"] = ", ".join(start_replicas(scope, scope_path))
        else:
            up["service replicas"] = "after `voicecycle run` (no model in the store yet)"
    return up


def _all_at_once(calls: list[Callable[[], object]]) -> list[object]:
    """Run the calls in threads; every one finishes, then the first failure is raised."""
    if len(calls) == 1:
        return [calls[0]()]
    with ThreadPoolExecutor(len(calls)) as pool:
        futures = [pool.submit(call) for call in calls]
        wait(futures)
    return [f.result() for f in futures]


def _dask_n(scope: Scope) -> int:
    from models.cores import available_cores

    return scope.runtime.max_workers or available_cores()


def team_status(scope: Scope) -> dict[str, bool]:
    """Whether each team server answers, and each service replica (by its address)."""
    from deployments.local import service_ready

    uri = scope.state.url("mlflow_tracking_uri")
    status = {
        "postgres": postgres_running(scope),
        "prefect": server_healthy(scope),
        "mlflow": uri.startswith("http") and mlflow_healthy(scope),
        "dask": dask_workers(scope) >= _dask_n(scope),
        "prefect workers": all(_alive(scope, n) for n in worker_names(scope)),
    }
    for i, url in enumerate(replica_urls(scope)):
        status[f"service {url}"] = service_ready(_on_port(scope, scope.serving.port + i))
    return status


def team_down(scope: Scope) -> list[str]:
    """Stop what `team_up` started, and the service and Evidently UI `voicecycle run` adds,
    clients first (each tier at once); the names that ran."""
    tiers = [
        ["service", *replica_names(scope), *worker_names(scope), "evidently-ui"],
        ["dask-workers", "dask-scheduler", "mlflow-server", "prefect-server"],
    ]
    stopped = []
    for tier in tiers:
        ran = _all_at_once(
            [functools.partial(stop_pidfile, _run_file(scope, f"{name}.pid")) for name in tier]
        )
        stopped += [name for name, was in zip(tier, ran, strict=True) if was]
    if stop_postgres(scope):
        stopped.append("postgres")
    return stopped
