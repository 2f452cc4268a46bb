"""`voicecycle team up|status|down`: the team profile's servers on this machine (PostgreSQL,
Prefect and MLflow on it, a Dask cluster, Prefect workers), each at the scope's address."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from flows.cli.common import ScopeFile, Workspace, app, load, print_json

TeamAction = Literal["up", "status", "down"]
TEAM_SCOPE = Path("scope.team.yaml")


@app.command()
def team(
    action: Annotated[TeamAction, typer.Argument(help="up, status or down")],
    scope_file: ScopeFile = TEAM_SCOPE,
    workspace: Workspace = None,
) -> None:
    """Start, check or stop the team's servers; then `voicecycle run --scope scope.team.yaml`."""
    from deployments.team import TeamError, team_down, team_status, team_up

    scope = load(scope_file, workspace)
    try:
        if action == "up":
            for name, where in team_up(scope, scope_file).items():
                print(f"{name}: {where}")
            print(f"next: voicecycle run --scope {scope_file}")
        elif action == "down":
            stopped = team_down(scope)
            print("stopped: " + ", ".join(stopped) if stopped else "nothing was running")
        else:
            status = team_status(scope)
    except (TeamError, RuntimeError, ValueError) as exc:  # a server that would not start
        print(f"team {action}: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    if action == "status":
        print_json(status)
        raise typer.Exit(0 if all(status.values()) else 1)
