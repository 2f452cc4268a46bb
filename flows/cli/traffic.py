"""`voicecycle simulate|story`: simulated traffic against the endpoint, and the story it tells."""

from __future__ import annotations

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
) -> None:
    """Send simulated voice-search traffic to the endpoint (exit 1 if any request failed)."""
    scope = load(scope_file, workspace)
    prepare(scope, quiet=True)
    from flows.simulate import simulate as simulate_flow

    summary = simulate_flow(scope, scenario, count, concurrency, rate, voices, seed, url)
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
    no_newsroom: Annotated[
        bool,
        typer.Option(
            help="retrain on production labels alone (default: the newsroom's list of the new "
            "names is the retrain's hot-word file, as training.hot_words_file)"
        ),
    ] = False,
    out: Out = RESULTS,
) -> None:
    """Replay the story: stable traffic, new names, drift, retrain (exit 1 if none fired)."""
    from deployments.local import bring_up

    scope = load(scope_file, workspace)
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
        newsroom=not no_newsroom,
    )
    if not result["retrain_triggered"]:
        raise typer.Exit(1)
