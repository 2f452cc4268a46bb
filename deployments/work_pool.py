"""The Prefect deployments of prefect.yaml: the process work pool they run on, registering them
with a scope as their parameter, and starting a run of one now (the manual retrain trigger).
Process management (the server and the worker) is deployments.local; nothing here runs at
import.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

from data_contracts.scoping import Scope
from deployments.local import REPO_ROOT, WORK_POOL

PREFECT_FILE = REPO_ROOT / "prefect.yaml"


def ensure_work_pool(name: str = WORK_POOL) -> None:
    """Create the process work pool the deployments run on (once)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(WorkPoolCreate(name=name, type="process"))
        except ObjectAlreadyExists:
            pass


def deploy_all(scope: Scope, prefect_file: Path = PREFECT_FILE) -> list[str]:
    """Register every deployment of prefect.yaml, with this scope as its parameter."""
    import yaml
    from prefect import Flow

    ensure_work_pool()
    spec = yaml.safe_load(prefect_file.read_text())
    names = []
    payload = scope.model_dump(mode="json")
    payload["state"]["workspace"] = str(scope.state.workspace.resolve())
    for d in spec["deployments"]:
        flow: Any = Flow.from_source(source=str(REPO_ROOT), entrypoint=d["entrypoint"])
        params = {"scope": payload, **d.get("parameters", {})}
        cron = d.get("schedule", {}).get("cron") if d.get("schedule") else None
        if d["name"] == "monitor":
            cron = scope.monitoring.schedule_cron
        with contextlib.redirect_stdout(io.StringIO()):  # Prefect prints a table per deploy
            flow.deploy(
                name=d["name"],
                work_pool_name=d["work_pool"]["name"],
                parameters=params,
                cron=cron,
                description=d.get("description"),
                print_next_steps=False,
                ignore_warnings=True,
            )
        names.append(f"{flow.name}/{d['name']}")
    return names


def run_deployment_now(name: str, parameters: dict[str, object], wait: bool) -> tuple[str, str]:
    """Start a flow run of a registered deployment on the worker; (run id, state name).

    Without `wait` the run is only scheduled (state "Scheduled")."""
    from prefect.deployments import run_deployment

    run = run_deployment(name, parameters=parameters, timeout=None if wait else 0)
    state = run.state.name if run.state else "Scheduled"  # type: ignore[union-attr]
    return str(run.id), str(state)  # type: ignore[union-attr]
