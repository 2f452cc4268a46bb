"""`voicecycle`: the command line of the cycle, a thin Typer app. Every command has --help.

Each command loads the scope, calls a flow (or the local runtime in deployments/local.py for
the servers) and formats what it returns. Heavy libraries are imported inside the commands,
after the environment points at the workspace, so `voicecycle --help` is quick and nothing
touches a user's own servers. An expected failure (an invalid scope, a rejected manifest)
prints one message and no traceback.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from data_contracts.scoping import Scope, ScopeError, load_scope

app = typer.Typer(
    name="voicecycle",
    help="The full cycle of a voice-search speech recogniser: scope, data, augmentation, "
    "training, serving, monitoring, retraining.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

ScopeFile = Annotated[Path, typer.Option("--scope", help="scope file")]
Workspace = Annotated[
    Path | None, typer.Option("--workspace", help="override state.workspace (all local state)")
]
Out = Annotated[Path, typer.Option("--out", help="results folder")]
DEFAULT_SCOPE = Path("scope.yaml")
RESULTS = Path("bench/results")


# choices spelled here so that `--help` needs no heavy import; they match
# tasks.manifests.ManifestKind and tasks.simulation.ScenarioName
ServerAction = Literal["start", "stop", "status"]
ManifestFormat = Literal["nemo", "commonvoice", "csv"]
ScenarioChoice = Literal["stable", "new-names", "in-car", "mixed"]
Suite = Literal["data", "serve", "train"]
Profile = Literal["default", "quality"]


def _load(scope_file: Path, workspace: Path | None) -> Scope:
    scope = load_scope(scope_file)
    return scope.with_workspace(workspace) if workspace else scope


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def _prepare(scope: Scope, quiet: bool = False) -> str:
    """The local Prefect server up (started or reused); its UI address. Call it before
    importing a flow: Prefect reads its settings (the API address) once, at import."""
    from deployments.local import start_server

    ui = start_server(scope)
    if not quiet:
        print(f"Prefect UI: {ui}", file=sys.stderr)
    return ui


@app.command()
def server(
    action: Annotated[ServerAction, typer.Argument(help="start, stop or status")],
    scope_file: ScopeFile = DEFAULT_SCOPE,
    workspace: Workspace = None,
) -> None:
    """Start or check the Prefect server (UI); stop also stops the worker and service."""
    from deployments.local import configure_environment, server_healthy, start_server, stop_all

    scope = _load(scope_file, workspace)
    configure_environment(scope)
    if action == "start":
        print(f"Prefect UI: {start_server(scope)}")
    elif action == "stop":
        stopped = stop_all(scope)
        print("stopped: " + ", ".join(stopped) if stopped else "nothing was running")
    else:
        up = server_healthy(scope)
        print("running" if up else "not running")
        raise typer.Exit(0 if up else 1)


@app.command("validate-scope")
def validate_scope(scope_file: ScopeFile = DEFAULT_SCOPE, workspace: Workspace = None) -> None:
    """Check the scope file and what it names."""
    from tasks.scoping import scope_problems

    problems = scope_problems(_load(scope_file, workspace))
    if problems:
        print("invalid scope:\n" + "\n".join(f"  - {p}" for p in problems), file=sys.stderr)
        raise typer.Exit(2)
    print(f"scope {scope_file} is valid")


@app.command()
def run(scope_file: ScopeFile = DEFAULT_SCOPE, workspace: Workspace = None) -> None:
    """Run the full cycle against the local Prefect server, then deploy and serve."""
    from deployments.local import bring_up

    scope = _load(scope_file, workspace)
    ui = _prepare(scope)
    from flows.full_cycle import full_cycle

    _print_json(full_cycle(scope))
    url = bring_up(scope, scope_file)
    print(
        f"\nThe cycle finished.\n  Prefect UI (runs and artifacts): {ui}\n"
        f"  Speech endpoint: {url}/transcribe (API docs: {url}/)\n"
        f"  MLflow UI: {sys.executable} -m mlflow ui --backend-store-uri "
        f"{scope.state.url('mlflow_tracking_uri')} --host 127.0.0.1 --port 5000"
    )


def _ingest_outcome(state: Any, summary_path: Path) -> tuple[dict[str, Any], int, str]:
    """The ingest flow's summary, exit code (0 accepted, 1 rejected, 2 unusable input) and
    failure message."""
    from tasks.ingestion import IngestionRejected

    if state.is_completed():
        return json.loads(summary_path.read_text()), 0, ""
    try:
        state.result()
        exc: BaseException = RuntimeError("unknown failure")
    except BaseException as raised:  # the flow's own failure, re-raised by Prefect
        exc = raised
    summary = (
        json.loads(summary_path.read_text())
        if summary_path.is_file()
        else {"dataset_version": None, "accepted": 0, "quarantined": [], "error": str(exc)}
    )
    return summary, 1 if isinstance(exc, IngestionRejected) else 2, str(exc)


@app.command()
def ingest(
    scope_file: ScopeFile = DEFAULT_SCOPE,
    workspace: Workspace = None,
    manifest: Annotated[
        Path | None, typer.Option(help="a manifest to ingest instead of the scope's sources")
    ] = None,
    kind: Annotated[
        ManifestFormat | None, typer.Option(help="manifest format (default: from the extension)")
    ] = None,
    data_root: Annotated[
        Path | None, typer.Option(help="folder all audio must lie under (default: manifest's)")
    ] = None,
    source_name: Annotated[str, typer.Option(help="name recorded as the rows' source")] = (
        "manifest"
    ),
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON summary on stdout")] = False,
) -> None:
    """Ingest the scope's sources, or one manifest, into a dataset version (exit 0: accepted,
    1: too many rows quarantined, 2: unusable input)."""
    import tempfile

    scope = _load(scope_file, workspace)
    # with --json, stdout holds only the summary: flow logs and progress bars go to stderr
    quiet = contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext()
    with quiet, tempfile.TemporaryDirectory() as tmp:
        _prepare(scope, quiet=as_json)
        from flows.ingest import ingest as ingest_flow
        from tasks.scope_overrides import with_manifest

        if manifest is not None:
            scope = with_manifest(scope, manifest, kind, data_root, source_name)
        summary_path = Path(tmp) / "summary.json"
        state = ingest_flow(scope, summary_path=summary_path, return_state=True)
        summary, code, error = _ingest_outcome(state, summary_path)
    if as_json:
        _print_json(summary)
    elif summary.get("dataset_version"):
        print(
            f"dataset version {summary['dataset_version']}: {summary['accepted']} accepted, "
            f"{len(summary['quarantined'])} quarantined"
        )
    if code:
        print(f"ingestion failed: {error}", file=sys.stderr)
        raise typer.Exit(code)


@app.command()
def augment(
    dataset_version: Annotated[str, typer.Option(help="e.g. ds-0123456789ab")],
    scope_file: ScopeFile = DEFAULT_SCOPE,
    workspace: Workspace = None,
) -> None:
    """Augment a dataset version with car noise."""
    scope = _load(scope_file, workspace)
    _prepare(scope)
    from flows.augment import augment as augment_flow

    print(augment_flow(scope, dataset_version))


@app.command()
def train(
    augmented_version: Annotated[str, typer.Option(help="e.g. aug-0123456789ab")],
    scope_file: ScopeFile = DEFAULT_SCOPE,
    workspace: Workspace = None,
    warm_start: Annotated[
        str | None, typer.Option(metavar="VERSION", help="start from a registered version")
    ] = None,
    resume: Annotated[
        str | None, typer.Option(metavar="RUN_ID", help="continue an interrupted MLflow run")
    ] = None,
) -> None:
    """Train, analyse, register and gate on an augmented version."""
    scope = _load(scope_file, workspace)
    _prepare(scope)
    from flows.train import train as train_flow

    _print_json(
        train_flow(scope, augmented_version, warm_start_from=warm_start, resume_run_id=resume)
    )


@app.command()
def rollback(scope_file: ScopeFile = DEFAULT_SCOPE, workspace: Workspace = None) -> None:
    """Move the champion alias back to the previous champion; the service follows it."""
    scope = _load(scope_file, workspace)
    _prepare(scope)
    from flows.rollback import rollback as rollback_flow

    state = rollback_flow(scope, return_state=True)
    try:
        done = state.result()
    except RuntimeError as exc:  # no earlier champion: the registry says why
        print(str(exc), file=sys.stderr)
        raise typer.Exit(1) from None
    print(
        f"champion of {scope.registry.model_name}: version {done['from_version']} -> "
        f"{done['to_version']}\nBentoML store: {done['model_tag']} (version "
        f"{done['to_version']}) is what serves now; a running service switches at its next "
        f"poll ({scope.serving.reload_poll_seconds:g} s)"
    )


@app.command()
def deploy(scope_file: ScopeFile = DEFAULT_SCOPE, workspace: Workspace = None) -> None:
    """Register prefect.yaml's deployments and start the worker."""
    from deployments.local import WORK_POOL, deploy_all, start_worker

    scope = _load(scope_file, workspace)
    _prepare(scope)
    for name in deploy_all(scope):
        print(f"deployed {name}")
    start_worker(scope)
    print(f"process worker running for work pool {WORK_POOL!r}")


@app.command()
def retrain(
    reason: Annotated[str, typer.Option(help="why: recorded in the run and the registry")],
    scope_file: ScopeFile = DEFAULT_SCOPE,
    workspace: Workspace = None,
    wait: Annotated[bool, typer.Option(help="wait for the retrain to finish")] = False,
    local: Annotated[bool, typer.Option(help="run in this process, not the worker")] = False,
) -> None:
    """Trigger the retrain deployment (or run it here with --local)."""
    from deployments.local import deploy_all, run_deployment_now, start_worker

    scope = _load(scope_file, workspace)
    ui = _prepare(scope)
    if local:
        from flows.retrain import retrain as retrain_flow

        _print_json(retrain_flow(scope, reason))
        return
    deploy_all(scope)
    start_worker(scope)
    run_id, state = run_deployment_now("retrain/retrain", {"reason": reason}, wait)
    print(f"retrain flow run {run_id} ({state}): {ui}/runs/flow-run/{run_id}")
    if wait and state != "Completed":
        raise typer.Exit(1)


@app.command()
def monitor(
    scope_file: ScopeFile = DEFAULT_SCOPE,
    workspace: Workspace = None,
    no_trigger: Annotated[bool, typer.Option(help="report only; never retrain")] = False,
) -> None:
    """Check the prediction log for drift now."""
    scope = _load(scope_file, workspace)
    _prepare(scope)
    from flows.monitor import monitor as monitor_flow

    _print_json(monitor_flow(scope, trigger=not no_trigger))


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
    scope = _load(scope_file, workspace)
    _prepare(scope, quiet=True)
    from flows.simulate import simulate as simulate_flow

    summary = simulate_flow(scope, scenario, count, concurrency, rate, voices, seed, url)
    _print_json(summary)
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

    scope = _load(scope_file, workspace)
    _prepare(scope)
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


@app.command()
def package(
    scope_file: ScopeFile = DEFAULT_SCOPE,
    workspace: Workspace = None,
    no_build: Annotated[bool, typer.Option(help="only import into the model store")] = False,
) -> None:
    """Import the champion into the BentoML store and build a Bento."""
    scope = _load(scope_file, workspace)
    _prepare(scope)
    from flows.package import package as package_flow

    _print_json(package_flow(scope, build=not no_build))


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

    scope = _load(scope_file, workspace)
    configure_environment(scope)  # before anything imports prefect: it reads them once
    from tasks.scope_overrides import with_port

    scope = with_port(scope, port)
    if stop:
        print("stopped" if stop_service(scope) else "no service started from this workspace")
        return
    if not store_has_model(scope):
        print("the BentoML store has no model yet: packaging the champion first", file=sys.stderr)
        from flows.package import package as package_flow

        _prepare(scope)
        package_flow(scope, build=False)
    if foreground:
        raise typer.Exit(serve_foreground(scope, scope_file))
    url = start_service(scope, scope_file)
    print(f"serving on {url} (POST /transcribe, GET /metadata, API docs at {url}/)")


@app.command()
def bench(
    suite: Annotated[Suite, typer.Argument(help="which benchmark")],
    scope_file: ScopeFile = DEFAULT_SCOPE,
    workspace: Workspace = None,
    profile: Annotated[
        Profile, typer.Option(help="training profile for the train benchmark")
    ] = "default",
    out: Out = RESULTS,
) -> None:
    """Run a benchmark; writes JSON under bench/results/ and prints a table."""
    import importlib

    from deployments.local import configure_environment

    scope = _load(scope_file, workspace)
    configure_environment(scope, api=False)
    module = importlib.import_module(f"bench.{suite}")  # bench/ is imported only here
    if suite == "train":
        module.main(scope, out, profile=profile)
    else:
        module.main(scope, out)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `voicecycle` console command; its exit code."""
    try:
        app(args=argv, prog_name="voicecycle")
    except SystemExit as done:  # Typer (standalone) ends every command this way
        return done.code if isinstance(done.code, int) else int(done.code is not None)
    except ScopeError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
