"""`voicecycle server|serve|deploy`: the local servers, the worker and the service."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from flows.cli.common import DEFAULT_SCOPE, ScopeFile, ServerAction, Workspace, app, load, prepare


@app.command()
def server(
    action: Annotated[ServerAction, typer.Argument(help="start, stop or status")],
    scope_file: ScopeFile = DEFAULT_SCOPE,
    workspace: Workspace = None,
) -> None:
    """Start or check the Prefect server (UI); stop also stops the worker and service."""
    from deployments.local import (
        check_server_owner,
        configure_environment,
        server_healthy,
        start_server,
        stop_all,
    )

    scope = load(scope_file, workspace)
    configure_environment(scope)
    if action == "start":
        print(f"Prefect UI: {start_server(scope)}")
    elif action == "stop":
        stopped = stop_all(scope)
        print("stopped: " + ", ".join(stopped) if stopped else "nothing was running")
    else:
        up = server_healthy(scope)
        if up:
            check_server_owner(scope)  # another workspace's server is not this one's (exit 5)
        print("running" if up else "not running")
        raise typer.Exit(0 if up else 1)


@app.command()
def deploy(scope_file: ScopeFile = DEFAULT_SCOPE, workspace: Workspace = None) -> None:
    """Register prefect.yaml's deployments and start the worker."""
    from deployments.local import WORK_POOL, start_worker
    from deployments.work_pool import deploy_all

    scope = load(scope_file, workspace)
    prepare(scope)
    for name in deploy_all(scope):
        print(f"deployed {name}")
    start_worker(scope)
    print(f"process worker running for work pool {WORK_POOL!r}")


@app.command()
def serve(
    scope_file: ScopeFile = DEFAULT_SCOPE,
    workspace: Workspace = None,
    port: Annotated[int | None, typer.Option(help="override serving.port")] = None,
    foreground: Annotated[bool, typer.Option(help="run attached (Ctrl-C stops)")] = False,
    stop: Annotated[bool, typer.Option(help="stop the background service")] = False,
) -> None:
    """Serve the champion over HTTP with BentoML (127.0.0.1)."""
    from deployments.local import (
        configure_environment,
        serve_foreground,
        start_service,
        stop_service,
        store_has_model,
    )

    scope = load(scope_file, workspace)
    configure_environment(scope)  # before anything imports prefect: it reads them once
    from tasks.scope_overrides import with_port

    scope = with_port(scope, port)
    if stop:
        print("stopped" if stop_service(scope) else "no service started from this workspace")
        return
    if not store_has_model(scope):
        print("the BentoML store has no model yet: packaging the champion first", file=sys.stderr)
        from flows.package import package as package_flow

        prepare(scope)
        package_flow(scope, build=False)
    if foreground:
        raise typer.Exit(serve_foreground(scope, scope_file))
    url = start_service(scope, scope_file)
    print(f"serving on {url}: voice-search page {url}/, POST /transcribe, API docs {url}/docs")
