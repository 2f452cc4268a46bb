"""`voicecycle bench SUITE`: the benchmarks (the only place that imports bench/)."""

from __future__ import annotations

import sys
from typing import Annotated, Literal

import typer

from flows.cli.common import (
    DEFAULT_SCOPE,
    RESULTS,
    Out,
    Profile,
    ScopeFile,
    Suite,
    Workspace,
    app,
    load,
)


@app.command()
def bench(
    suite: Annotated[Suite, typer.Argument(help="which benchmark")],
    scope_file: ScopeFile = DEFAULT_SCOPE,
    workspace: Workspace = None,
    profile: Annotated[
        Profile, typer.Option(help="training profile for the train benchmark")
    ] = "default",
    out: Out = RESULTS,
    soak_minutes: Annotated[
        float, typer.Option(help="length of the faults benchmark's soak (the issue's is 20)")
    ] = 2.0,
    switch_minutes: Annotated[
        float, typer.Option(help="a model switch every this many minutes of the faults soak")
    ] = 5.0,
    servers: Annotated[
        Literal["local", "team"],
        typer.Option(
            help="faults only: local (one service, SQLite log -> faults.json) or team (two "
            "replicas sharing a PostgreSQL log and one store -> faults-team.json)"
        ),
    ] = "local",
) -> None:
    """Run a benchmark; writes JSON under bench/results/ and prints a table."""
    import importlib

    from deployments.local import configure_environment

    scope = load(scope_file, workspace)
    configure_environment(scope, api=False)
    module = importlib.import_module(f"bench.{suite}")  # bench/ is imported only here
    if suite == "train":
        module.main(scope, out, profile=profile)
    elif suite == "faults" and servers == "team":
        from deployments.addresses import TeamError

        try:
            importlib.import_module("bench.faults_team").main(
                scope, out, soak_minutes=soak_minutes, switch_minutes=switch_minutes
            )
        except TeamError as exc:  # no PostgreSQL here, or it would not start
            print(f"bench faults --servers team: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None
    elif suite == "faults":
        module.main(scope, out, soak_minutes=soak_minutes, switch_minutes=switch_minutes)
    elif suite == "human":
        try:
            module.main(scope, out)
        except module.NoRecordings as exc:  # alsa-utils is not installed here
            print(f"bench human: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None
    else:
        module.main(scope, out)
