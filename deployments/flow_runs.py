"""The sweep of flow runs whose process is gone: a run left Running or Pending by a process
that died (a `kill -9`ed CLI or worker, or a Prefect server killed under it, so nobody could
report the end) ends Crashed with a message saying so. `start_server` sweeps every time it
starts or reuses the server.

A run names its process in `infrastructure_pid`: `host:pid` as tasks/flow_runs.py records it
at the start of every flow, or a bare pid as the process worker of `WORK_POOL` on this
machine records its child's. An open subflow run of a run that is gone or has ended is
crashed too (a subflow that names no process dies with its parent's). Runs of other
machines, and top-level runs that name no process, are left alone. Prefect's own zombie
detection (heartbeat events and an automation) covers only deployment runs and waits for
missed heartbeats; this needs neither.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import psutil

OPEN_STATES = ("RUNNING", "PENDING")
PID_REUSE_SLACK_S = 2.0  # a process started this long after the run began is another one


@dataclass(frozen=True)
class Orphan:
    run_id: str
    name: str
    state: str
    why: str


def run_process(infrastructure_pid: str | None, work_pool: str | None, local_pool: str,
                host: str) -> int | None:  # fmt: skip
    """The pid of the run's process when it runs on this machine, else None."""
    if not infrastructure_pid:
        return None
    owner_host, _, pid = infrastructure_pid.rpartition(":")
    if not pid.isdigit():
        return None
    if owner_host:
        return int(pid) if owner_host == host else None
    return int(pid) if work_pool == local_pool else None  # the local worker's child


def process_gone(pid: int, started: datetime | None) -> bool:
    """True when no process `pid` runs, or the one that does began after the run did."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return True
        created = proc.create_time()
    except psutil.NoSuchProcess:
        return True
    return started is not None and created > started.timestamp() + PID_REUSE_SLACK_S


def _started(run: dict[str, object]) -> datetime | None:
    for key in ("start_time", "created"):
        value = run.get(key)
        if isinstance(value, str) and value:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return None


def find_orphans(api_url: str, local_pool: str, timeout_s: float = 30.0) -> list[Orphan]:
    """Running and Pending flow runs of this machine whose process is gone, and the open
    subflow runs (named process or not) of a run that is gone or has ended."""
    host = socket.gethostname()
    with httpx.Client(base_url=api_url.rstrip("/") + "/", timeout=timeout_s) as client:
        runs = _open_runs(client)
        found: dict[str, Orphan] = {}
        for run in runs:
            pid = run_process(run.get("infrastructure_pid"), run.get("work_pool_name"),
                              local_pool, host)  # fmt: skip
            if pid is not None and process_gone(pid, _started(run)):
                why = f"its process (pid {pid} on {host}) is gone"
                found[run["id"]] = _orphan(run, why)
        children = [r for r in runs if r["id"] not in found and r.get("parent_task_run_id")]
        parents = {r["id"]: _parent_run(client, str(r["parent_task_run_id"])) for r in children}
        grew = True
        while grew:  # a subflow of a subflow of a dead run: to a fixed point
            grew = False
            for run in children:
                parent_id, parent_state = parents[run["id"]]
                if run["id"] in found or parent_id is None:
                    continue
                if parent_id in found or parent_state not in (*OPEN_STATES, None):
                    ended = "is gone" if parent_id in found else f"ended {parent_state}"
                    found[run["id"]] = _orphan(run, f"its parent flow run {parent_id} {ended}")
                    grew = True
    return list(found.values())


def _orphan(run: dict[str, object], why: str) -> Orphan:
    state = run.get("state")
    kind = str(state.get("type", "?")) if isinstance(state, dict) else "?"
    return Orphan(str(run["id"]), str(run.get("name")), kind, why)


def _open_runs(client: httpx.Client) -> list[dict[str, Any]]:
    body = {"flow_runs": {"state": {"type": {"any_": list(OPEN_STATES)}}}, "limit": 200}
    runs: list[dict[str, Any]] = []
    while True:
        page = client.post("flow_runs/filter", json={**body, "offset": len(runs)})
        page.raise_for_status()
        runs += page.json()
        if len(page.json()) < 200:
            return runs


def _parent_run(client: httpx.Client, task_run_id: str) -> tuple[str | None, str | None]:
    """The flow run a subflow's parent task run belongs to, and that run's state type."""
    task_run = client.get(f"task_runs/{task_run_id}")
    if task_run.status_code == 404:
        return None, None
    task_run.raise_for_status()
    parent_id = task_run.json().get("flow_run_id")
    if parent_id is None:
        return None, None
    parent = client.get(f"flow_runs/{parent_id}")
    parent.raise_for_status()
    return str(parent_id), (parent.json().get("state") or {}).get("type")


def crash_orphans(api_url: str, local_pool: str, timeout_s: float = 30.0) -> list[Orphan]:
    """End every orphaned run Crashed, with why; the runs that were ended."""
    orphans = find_orphans(api_url, local_pool, timeout_s)
    with httpx.Client(base_url=api_url.rstrip("/") + "/", timeout=timeout_s) as client:
        for orphan in orphans:
            message = (
                f"Crashed: left {orphan.state.capitalize()} but {orphan.why}; ended by the "
                "sweep when the Prefect server was started or reused"
            )
            state = {"type": "CRASHED", "name": "Crashed", "message": message}
            done = client.post(
                f"flow_runs/{orphan.run_id}/set_state", json={"state": state, "force": True}
            )
            done.raise_for_status()
    return orphans
