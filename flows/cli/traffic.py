"""`voicecycle simulate|story`: simulated traffic against the endpoint, and the story it tells."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.cli.common import (
    DEFAULT_SCOPE,
    RESULTS,
    Out,
    ScenarioChoice,
    ScopeFile,
    Workspace,
    app,
    load,
    prepare,
    print_json,
)

NamesFile = Annotated[
    Path | None,
    typer.Option(
        "--names",
        help="new names, one a line: they replace the corpus's new celebrities and "
        "politicians in the traffic (and, in the story, in the typed queries)",
    ),
]


def read_names(path: Path | None) -> list[str] | None:
    """The names in `path` (None: the corpus's); a bad file is one message, exit 2."""
    if path is None:
        return None
    from tasks.simulated_queries import NamesFileError, read_names_file

    try:
        return read_names_file(path)
    except NamesFileError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


@app.command()
def simulate(
    scope_file: ScopeFile = DEFAULT_SCOPE,
    workspace: Workspace = None,
    scenario: Annotated[ScenarioChoice, typer.Option()] = "stable",
    count: Annotated[int, typer.Option(help="requests to send")] = 50,
    rate: Annotated[
        float | None, typer.Option(help="requests per second (default: as fast as allowed)")
    ] = None,
    concurrency: Annotated[int, typer.Option()] = 4,
    voices: Annotated[int, typer.Option(help="held-out speakers to draw from")] = 24,
    seed: Annotated[int, typer.Option()] = 2024,
    url: Annotated[
        str | None, typer.Option(help="endpoint (default: the scope's serving host and port)")
    ] = None,
    names: NamesFile = None,
) -> None:
    """Send simulated voice-search traffic to the endpoint (exit 1 if any request failed)."""
    new_names = read_names(names)
    scope = load(scope_file, workspace)
    prepare(scope, quiet=True)
    from flows.simulate import simulate as simulate_flow

    summary = simulate_flow(scope, scenario, count, concurrency, rate, voices, seed, url, new_names)
    print_json(summary)
    if summary["ok"] != summary["sent"]:
        raise typer.Exit(1)


@app.command()
def story(
    scope_file: ScopeFile = DEFAULT_SCOPE,
    workspace: Workspace = None,
    windows: Annotated[int, typer.Option(help="stable windows (false alarms)")] = 10,
    chunk: Annotated[int, typer.Option(help="shifted requests per drift check")] = 100,
    eval_clips: Annotated[int, typer.Option(help="clips per fixed WER set")] = 120,
    max_shifted: Annotated[
        int, typer.Option(help="shifted requests after which the story stops waiting for drift")
    ] = 1500,
    typed_queries: Annotated[
        int, typer.Option(help="typed search queries of the period (new names among noise)")
    ] = 1500,
    names: NamesFile = None,
    out: Out = RESULTS,
    after_windows: Annotated[
        int, typer.Option(help="windows of shifted traffic checked after the retrain")
    ] = 2,
) -> None:
    """Replay the story: stable traffic, new names typed (hot words) then spoken, drift,
    labels, retrain, drift after it (exit 1 if no retrain ran; 7 while a run, story or
    retrain works on the workspace)."""
    from deployments.local import bring_up
    from tasks.workspace_lock import cycle_lock

    new_names = read_names(names)
    scope = load(scope_file, workspace)
    with cycle_lock(scope, "voicecycle story"):
        prepare(scope)
        from flows.full_cycle import full_cycle
        from flows.story import story as story_flow

        full_cycle(scope, unless_champion=True)
        url = bring_up(scope, scope_file)
        result = story_flow(
            scope,
            url,
            out,
            stable_windows=windows,
            chunk=chunk,
            max_shifted=max_shifted,
            eval_clips=eval_clips,
            names=new_names,
            typed_queries=typed_queries,
            after_windows=after_windows,
        )
    if not result["retrain_triggered"]:
        raise typer.Exit(1)
