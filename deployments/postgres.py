"""The team's PostgreSQL cluster: created in `state.postgres_dir` (initdb/pg_ctl from
`pg_config --bindir`), listening where `state.prediction_log_url` points, holding three
databases owned by the URL's user: the prediction log (the URL's own), `prefect` and
`mlflow`. Run as root, the cluster runs as the `postgres` system user."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from data_contracts.scoping import Scope
from deployments.addresses import LOOPBACK, TeamError, wait_port

PREFECT_DB = "prefect"
MLFLOW_DB = "mlflow"


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


def _pg(tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = _as_postgres_user([str(postgres_bindir() / tool), *args])
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd="/")
    if check and done.returncode != 0:
        raise TeamError(f"{tool} failed ({done.returncode}): {(done.stderr or done.stdout)[-800:]}")
    return done


def postgres_data_dir(scope: Scope) -> Path:
    return scope.state.path("postgres_dir").resolve() / "data"


def postgres_running(scope: Scope) -> bool:
    data = postgres_data_dir(scope)
    return data.is_dir() and _pg("pg_ctl", "status", "-D", str(data), check=False).returncode == 0


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
            _pg("initdb", "-D", str(data), "-U", pg.user, f"--pwfile={pwfile}",
                "-A", "scram-sha-256", "-E", "UTF8", "--no-instructions")  # fmt: skip
        except TeamError as exc:
            raise TeamError(f"could not create the PostgreSQL cluster in {data}: {exc}") from exc
        finally:
            pwfile.unlink(missing_ok=True)
    if not postgres_running(scope):
        options = f"-c listen_addresses={pg.host} -p {pg.port} -c unix_socket_directories=''"
        log = folder / "postgres.log"
        _pg("pg_ctl", "start", "-w", "-t", "60", "-D", str(data), "-l", str(log),
            "-o", options)  # fmt: skip
    wait_port(pg.host, pg.port, 60.0, "PostgreSQL")
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
    """Stop the cluster (fast shutdown: sessions end, data is kept); whether it ran."""
    if not postgres_running(scope):
        return False
    _pg("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(postgres_data_dir(scope)))
    return True
