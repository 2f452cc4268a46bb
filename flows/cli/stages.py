"""The stages of the cycle, one command each: validate-scope, run, ingest, augment, train,
package, monitor, retrain, rollback."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from flows.cli.common import (
    DEFAULT_SCOPE,
    ManifestFormat,
    ScopeFile,
    Workspace,
    app,
    load,
    prepare,
    print_json,
)


@app.command("validate-scope")
def validate_scope(scope_file: ScopeFile = DEFAULT_SCOPE, workspace: Workspace = None) -> None:
    """Check the scope file and what it names."""
    from tasks.scoping import scope_problems

    problems = scope_problems(load(scope_file, workspace))
    if problems:
        print("invalid scope:\n" + "\n".join(f"  - {p}" for p in problems), file=sys.stderr)
        raise typer.Exit(2)
    print(f"scope {scope_file} is valid")


@app.command()
def run(scope_file: ScopeFile = DEFAULT_SCOPE, workspace: Workspace = None) -> None:
    """Run the full cycle against the local Prefect server, then deploy and serve (one cycle
    at a time on a workspace: a second run, story or retrain refuses, exit 7)."""
    from deployments.local import bring_up, start_evidently_ui
    from tasks.workspace_lock import cycle_lock

    scope = load(scope_file, workspace)
    with cycle_lock(scope, "voicecycle run"):
        ui = prepare(scope)
        from flows.full_cycle import full_cycle

        print_json(full_cycle(scope))
        url = bring_up(scope, scope_file)
        evidently = start_evidently_ui(scope)
    print(
        f"\nThe cycle finished.\n  Prefect UI (runs and artifacts): {ui}\n"
        f"  Voice-search page: {url}/ (POST {url}/transcribe; API docs: {url}/docs)\n"
        f"  Evidently UI (drift checks over time, project voicecycle): {evidently}\n"
        f"  MLflow UI: {mlflow_ui(scope.state.url('mlflow_tracking_uri'))}"
    )


def mlflow_ui(tracking_uri: str) -> str:
    """Where to see MLflow: a tracking server's own address, else the command that opens a UI
    on the local store."""
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/")
    return (
        f"{sys.executable} -m mlflow ui --backend-store-uri {tracking_uri} "
        "--host 127.0.0.1 --port 5000"
    )


def ingest_outcome(state: Any, summary_path: Path) -> tuple[dict[str, Any], int, str]:
    """The ingest flow's summary, exit code (0 accepted, 1 rejected, 2 unusable input) and
    failure message."""
    from flows.cli.failures import DISK_FULL, describe, expected_exit
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
    if expected_exit(exc) == DISK_FULL:  # exit 6, the message says nothing was published
        return summary, DISK_FULL, describe(exc, DISK_FULL).splitlines()[0]
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

    scope = load(scope_file, workspace)
    # with --json, stdout holds only the summary: flow logs and progress bars go to stderr
    quiet = contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext()
    with quiet, tempfile.TemporaryDirectory() as tmp:
        prepare(scope, quiet=as_json)
        from flows.ingest import ingest as ingest_flow
        from tasks.scope_overrides import with_manifest

        if manifest is not None:
            scope = with_manifest(scope, manifest, kind, data_root, source_name)
        summary_path = Path(tmp) / "summary.json"
        state = ingest_flow(scope, summary_path=summary_path, return_state=True)
        summary, code, error = ingest_outcome(state, summary_path)
    if as_json:
        print_json(summary)
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
    scope = load(scope_file, workspace)
    prepare(scope)
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
    scope = load(scope_file, workspace)
    prepare(scope)
    from flows.train import train as train_flow

    print_json(
        train_flow(scope, augmented_version, warm_start_from=warm_start, resume_run_id=resume)
    )


@app.command()
def package(
    scope_file: ScopeFile = DEFAULT_SCOPE,
    workspace: Workspace = None,
    no_build: Annotated[bool, typer.Option(help="only import into the model store")] = False,
) -> None:
    """Import the champion into the BentoML store and build a Bento."""
    scope = load(scope_file, workspace)
    prepare(scope)
    from flows.package import package as package_flow

    print_json(package_flow(scope, build=not no_build))


@app.command()
def monitor(
    scope_file: ScopeFile = DEFAULT_SCOPE,
    workspace: Workspace = None,
    no_trigger: Annotated[bool, typer.Option(help="report only; never retrain")] = False,
) -> None:
    """Check the prediction log for drift now."""
    scope = load(scope_file, workspace)
    prepare(scope)
    from flows.monitor import monitor as monitor_flow

    print_json(monitor_flow(scope, trigger=not no_trigger))


@app.command()
def retrain(
    reason: Annotated[str, typer.Option(help="why: recorded in the run and the registry")],
    scope_file: ScopeFile = DEFAULT_SCOPE,
    workspace: Workspace = None,
    wait: Annotated[bool, typer.Option(help="wait for the retrain to finish")] = False,
    local: Annotated[bool, typer.Option(help="run in this process, not the worker")] = False,
) -> None:
    """Trigger the retrain deployment (or run it here with --local); refused (exit 7) while
    a run or story works on the workspace, and a retrain waits for the one before it."""
    from deployments.local import start_worker
    from deployments.work_pool import deploy_all, run_deployment_now
    from tasks.workspace_lock import cycle_lock

    scope = load(scope_file, workspace)
    with cycle_lock(scope, "voicecycle retrain"):
        ui = prepare(scope)
        if local:
            from flows.retrain import retrain as retrain_flow

            print_json(retrain_flow(scope, reason))
            return
        deploy_all(scope)
        start_worker(scope)
        run_id, state = run_deployment_now("retrain/retrain", {"reason": reason}, wait)
    print(f"retrain flow run {run_id} ({state}): {ui}/runs/flow-run/{run_id}")
    if wait and state != "Completed":
        raise typer.Exit(1)


@app.command()
def rollback(scope_file: ScopeFile = DEFAULT_SCOPE, workspace: Workspace = None) -> None:
    """Move the champion alias back to the previous champion; the service follows it."""
    scope = load(scope_file, workspace)
    prepare(scope)
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
