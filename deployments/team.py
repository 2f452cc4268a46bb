"""The team profile on one machine: the servers a team would share, each at the address the
scope names, started as real processes on 127.0.0.1 and stopped again.

- PostgreSQL: a cluster created in `state.postgres_dir` (initdb/pg_ctl from `pg_config
  --bindir`), listening where `state.prediction_log_url` points. It holds three databases: the
  prediction log (the URL's own), `prefect` and `mlflow`, owned by the URL's user.
- Prefect server on that Postgres (asyncpg) at `state.prefect_api_url`, and
  `runtime.prefect_workers` process workers on the work pool.
- `mlflow server` with the Postgres backend store and served artifacts (under
  `state.mlflow_artifacts`) at `state.mlflow_tracking_uri`.
- a dask.distributed scheduler at `state.dask_scheduler` with `runtime.max_workers`
  single-threaded workers.

Secrets: the URLs name them as `{NAME}` placeholders; `team up` writes fresh ones into the
scope's `state.credentials_file` (mode 0600, in the workspace) when it is missing. Pid files
and logs are in `state.run_dir`, as for the local runtime; nothing runs at import.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import shutil
import socket
import string
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from data_contracts.scoping import Scope
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
)

LOOPBACK = ("127.0.0.1", "localhost")
PREFECT_DB = "prefect"
MLFLOW_DB = "mlflow"


class TeamError(RuntimeError):
    """The team profile cannot start as the scope asks; the message says what and where."""


@dataclass(frozen=True)
class Postgres:
    """The cluster the prediction-log URL points at."""

    host: str
    port: int
    user: str
    password: str
    database: str

    def url(self, driver: str, database: str) -> str:
        """A SQLAlchemy URL for one database of the cluster (driver: asyncpg, psycopg)."""
        return (
            f"postgresql+{driver}://{self.user}:{self.password}@{self.host}:{self.port}/{database}"
        )


def ensure_credentials(scope: Scope) -> Path | None:
    """Write fresh secrets for every `{NAME}` of the state URLs that neither the credentials
    file nor the environment holds (file mode 0600); the file's path, None when not set."""
    import yaml

    st = scope.state
    if st.credentials_file is None:
        return None
    path = st.path("credentials_file").resolve()
    known = yaml.safe_load(path.read_text()) or {} if path.is_file() else {}
    wanted = set()
    for name in ("prediction_log_url", "mlflow_tracking_uri", "prefect_api_url", "dask_scheduler"):
        value = getattr(st, name)
        if value:
            wanted |= {f for _, f, _, _ in string.Formatter().parse(value) if f}
    fresh = {n: secrets.token_urlsafe(18) for n in sorted(wanted - {"workspace"}) if n not in known}
    fresh = {n: v for n, v in fresh.items() if n not in os.environ}
    if fresh or not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(yaml.safe_dump({**known, **fresh}))
    path.chmod(0o600)
    return path


def postgres_target(scope: Scope) -> Postgres:
    """The Postgres cluster of `state.prediction_log_url`, which must be local to start."""
    from sqlalchemy.engine import make_url

    url = make_url(scope.state.url("prediction_log_url"))
    if url.get_backend_name() != "postgresql":
        raise TeamError(
            "the team profile keeps the prediction log on PostgreSQL: state.prediction_log_url "
            f"must be a postgresql+psycopg:// URL, got {url.render_as_string()!r}"
        )
    if url.host not in LOOPBACK or not url.username or not url.password or not url.database:
        raise TeamError(
            "state.prediction_log_url must name user, password, a 127.0.0.1 host and a "
            f"database for `team up` to create the cluster, got {url.render_as_string()!r}"
        )
    return Postgres(url.host, url.port or 5432, url.username, url.password, url.database)


def _host_port(address: str, field: str) -> tuple[str, int]:
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.hostname not in LOOPBACK or parts.port is None:
        raise TeamError(f"state.{field} must be 127.0.0.1 with a port to start here: {address!r}")
    return parts.hostname, parts.port


def postgres_bindir() -> Path:
    """The folder of initdb and pg_ctl: `pg_config --bindir`, else the PATH's initdb."""
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        folder = Path(out.stdout.strip())
        if (folder / "initdb").is_file():
            return folder
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise TeamError(
        "PostgreSQL is not installed (no pg_config or initdb on the PATH): "
        "install Debian's `postgresql` package (apt-get install postgresql)"
    )


def _as_postgres_user(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as the `postgres` system user."""
    if os.geteuid() != 0:
        return cmd
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", *cmd]


def _pg(
    scope: Scope, tool: str, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    cmd = _as_postgres_user([str(postgres_bindir() / tool), *args])
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd="/")
    if check and done.returncode != 0:
        raise TeamError(f"{tool} failed ({done.returncode}): {(done.stderr or done.stdout)[-800:]}")
    return done


def postgres_data_dir(scope: Scope) -> Path:
    return scope.state.path("postgres_dir").resolve() / "data"


def postgres_running(scope: Scope) -> bool:
    data = postgres_data_dir(scope)
    return (
        data.is_dir()
        and _pg(scope, "pg_ctl", "status", "-D", str(data), check=False).returncode == 0
    )


def start_postgres(scope: Scope, pg: Postgres) -> None:
    """Create the cluster (once) and start it on pg.host:pg.port; create the databases."""
    folder = scope.state.path("postgres_dir").resolve()
    data = folder / "data"
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    if not (data / "PG_VERSION").is_file():
        pwfile = folder / "initdb.pw"
        pwfile.touch(mode=0o600)
        pwfile.write_text(pg.password + "\n")
        if os.geteuid() == 0:
            shutil.chown(pwfile, "postgres", "postgres")
        try:
            _pg(scope, "initdb", "-D", str(data), "-U", pg.user, f"--pwfile={pwfile}",
                "-A", "scram-sha-256", "-E", "UTF8", "--no-instructions")  # fmt: skip
        except TeamError as exc:
            raise TeamError(f"could not create the PostgreSQL cluster in {data}: {exc}") from exc
        finally:
            pwfile.unlink(missing_ok=True)
    if not postgres_running(scope):
        options = f"-c listen_addresses={pg.host} -p {pg.port} -c unix_socket_directories=''"
        log = folder / "postgres.log"
        _pg(scope, "pg_ctl", "start", "-w", "-t", "60", "-D", str(data), "-l", str(log),
            "-o", options)  # fmt: skip
    _wait_port(pg.host, pg.port, 60.0, "PostgreSQL")
    _create_databases(pg, [pg.database, PREFECT_DB, MLFLOW_DB])


def _create_databases(pg: Postgres, names: list[str]) -> None:
    import psycopg

    conninfo = (
        f"host={pg.host} port={pg.port} user={pg.user} password={pg.password} dbname=postgres"
    )
    with psycopg.connect(conninfo, autocommit=True) as conn:
        have = {r[0] for r in conn.execute("SELECT datname FROM pg_database").fetchall()}
        for name in dict.fromkeys(names):
            if name not in have:
                conn.execute(f'CREATE DATABASE "{name}"')


def stop_postgres(scope: Scope) -> bool:
    if not postgres_running(scope):
        return False
    _pg(scope, "pg_ctl", "stop", "-w", "-m", "fast", "-D", str(postgres_data_dir(scope)))
    return True


def _wait_port(host: str, port: int, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1.0):
            return
        time.sleep(0.5)
    raise TeamError(f"{what} did not listen on {host}:{port} within {timeout_s:.0f} s")


def _port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1.0):
        return True
    return False


def _env(scope: Scope) -> dict[str, str]:
    configure_environment(scope)
    return {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}


def start_prefect(scope: Scope, pg: Postgres, timeout_s: float = 180.0) -> None:
    """The Prefect server on the team's Postgres, at state.prefect_api_url."""
    if scope.state.prefect_api_url is None:
        raise TeamError("the team profile needs state.prefect_api_url (http://127.0.0.1:PORT/api)")
    host, port = _host_port(prefect_api_url(scope), "prefect_api_url")
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
    host, port = _host_port(uri, "mlflow_tracking_uri")
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
    if not address or not _port_open(*_host_port(address, "dask_scheduler")):
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
    host, port = _host_port(address, "dask_scheduler")
    env = _env(scope)
    if not _port_open(host, port):
        cmd = [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", host,
               "--port", str(port), "--no-dashboard"]  # fmt: skip
        launch(scope, "dask-scheduler", cmd, env, lambda: _port_open(host, port), timeout_s)
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
    from deployments.local import ensure_work_pool

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
    migrations, imports), then the Prefect workers. With the scope's file and a model in the
    store, also the service replicas after the first."""
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
    """Stop what `team_up` started, clients first (each tier at once); the names that ran."""
    tiers = [
        ["service", *replica_names(scope), *worker_names(scope)],
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
