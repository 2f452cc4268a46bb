"""`voicecycle bench faults --servers team`: the service faults on the team profile -> bench/
results/faults-team.json and a printed table.

The team's serving shape, for real on 127.0.0.1: a PostgreSQL cluster holding the prediction
log (deployments/postgres.py, as `voicecycle team up` makes it) and two `bentoml serve`
replicas that share that log and one model store, each following the store's newest model.
On it: a service worker SIGKILLed under load, the database stopped and started under traffic,
and the soak (mixed traffic spread over both replicas, a new model every `switch_minutes`).
The keys are those of faults.json, plus what only two replicas can show (`replicas`,
`duplicated_rows`, the versions each replica served).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.faults import kill_worker_under_load, soak, soak_figures
from bench.harness import free_port, make_store, start_tuned, stop_server
from bench.mutations import encode
from bench.report import write_results
from data_contracts.scoping import Scope
from deployments.postgres import postgres_bindir, postgres_target, start_postgres, stop_postgres

REPLICAS = 2
SERVING = {"max_latency_ms": 10_000}  # the soak checks answers, not how much 2 cores take


def database_down(urls: list[str], scope: Scope, wav: bytes, n: int = 4) -> dict[str, Any]:
    """Stop the database under traffic to every replica: each request a quick 503
    `log_unavailable`; started again, every replica logs again by itself (no restart)."""
    codes: list[str] = []
    with httpx.Client(timeout=120) as client:
        stop_postgres(scope)
        try:
            for i in range(n):
                r = client.post(f"{urls[i % len(urls)]}/transcribe", files={"audio": wav})
                codes.append(r.json().get("code") if r.status_code == 503 else str(r.status_code))
        finally:
            start_postgres(scope, postgres_target(scope))
        back: list[float | None] = []  # by replica, in the order of `urls`
        started = time.monotonic()
        for url in urls:
            while time.monotonic() - started < 60:
                if client.post(f"{url}/transcribe", files={"audio": wav}).status_code == 200:
                    back.append(round(time.monotonic() - started, 1))
                    break
                time.sleep(1)
            else:
                back.append(None)
    ok = all(c == "log_unavailable" for c in codes) and None not in back
    return {"codes": codes, "seconds_to_log_again": back, "ok": ok}


def main(
    scope: Scope, out: Path, soak_minutes: float = 2.0, switch_minutes: float = 5.0
) -> dict[str, Any]:
    del scope  # the cluster and the replicas run on scopes of their own under a temporary folder
    bindir = postgres_bindir()  # a missing PostgreSQL is a clear TeamError before anything starts
    version = subprocess.run(
        [str(bindir / "pg_ctl"), "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()  # "pg_ctl (PostgreSQL) 15.x"
    root = Path(tempfile.mkdtemp(prefix="bench-faults-team-"))
    root.chmod(0o711)  # the cluster runs as the `postgres` user when this runs as root
    url = f"postgresql+psycopg://vc:faults-pw@127.0.0.1:{free_port()}/predictions"
    state: dict[str, object] = {"prediction_log_url": url, "postgres_dir": str(root / "postgres")}
    cluster = Scope.model_validate({"state": {"workspace": str(root / "workspace"), **state}})
    wav = encode("WAV", "PCM_16", 16000, 1, 2.0)
    figures: dict[str, Any] = {"replicas": REPLICAS, "prediction_log": version}
    start_postgres(cluster, postgres_target(cluster))
    servers = []
    try:
        stored = make_store(root)  # one store both replicas follow
        for i in range(REPLICAS):
            (replica := root / f"replica-{i + 1}").mkdir()
            servers.append(start_tuned(stored, replica, state, **SERVING))
        killed = kill_worker_under_load(servers[0], wav)
        figures["killed"] = [f"a worker of replica 1 under load (SIGKILL): {killed}"]
        figures["kills_survived"] = int(killed["ok"] and killed["lost"] == 0)
        figures["acknowledged_lost"] = killed["lost"]
        down = database_down([s.url for s in servers], cluster, wav)
        figures["killed"].append(f"the PostgreSQL cluster under traffic (pg_ctl stop): {down}")
        figures["kills_survived"] += int(down["ok"])
        figures["log_down_codes"] = down["codes"]
        figures["log_down_seconds_to_log_again"] = down["seconds_to_log_again"]
        soaked = soak(servers, root, soak_minutes, switch_minutes, wav)
        figures["acknowledged_lost"] += soaked["lost"]
        figures["duplicated_rows"] = soaked["duplicated"]
        figures |= soak_figures(soaked, soak_minutes, switch_minutes)
        figures["soak_rss_growth_by_replica"] = soaked["growth_by_server"]
        figures["soak_versions_served_by_replica"] = soaked["versions_by_server"]
    finally:
        for server in servers:
            stop_server(server)
        stop_postgres(cluster)
        shutil.rmtree(root, ignore_errors=True)
    write_results(out, "faults-team", figures)
    return figures
