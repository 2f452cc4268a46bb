"""Which process runs a flow run: recorded on the run (its `infrastructure_pid`, as a process
worker records its child's pid) so that a later start can tell a run whose process died
(a killed CLI, a killed worker's child, a Prefect server that came back) from a live one."""

from __future__ import annotations

import logging
import os
import socket


def owner_id() -> str:
    """This process, as `host:pid`."""
    return f"{socket.gethostname()}:{os.getpid()}"


def record_flow_run_process() -> None:
    """Write this process (`host:pid`) on the current flow run where none is recorded and no
    worker records one (a deployment's run carries its worker's pid already)."""
    from prefect.client.orchestration import get_client
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    run = context.flow_run if context is not None else None
    if run is None or run.deployment_id is not None or run.infrastructure_pid:
        return
    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run(run.id, infrastructure_pid=owner_id())
    except Exception as exc:  # the run goes on; only a later sweep loses its pid
        logging.getLogger(__name__).warning(
            "could not record this process on flow run %s: %s", run.id, exc
        )
