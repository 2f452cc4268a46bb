"""`voicecycle label export|import|status`: production audio out to people (Label Studio tasks,
or files) and their labels back in; the retrain starts once enough labels are in."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from flows.cli.common import DEFAULT_SCOPE, ScopeFile, Workspace, app, load, prepare, print_json

label_app = typer.Typer(
    help="Labelling batches: export to Label Studio (or files), import the labels, status.",
    no_args_is_help=True,
)
app.add_typer(label_app, name="label")


@label_app.command("export")
def export(
    scope_file: ScopeFile = DEFAULT_SCOPE,
    workspace: Workspace = None,
    reason: Annotated[str, typer.Option(help="why this batch: shown with it")] = "by hand",
) -> None:
    """Open a labelling batch from the recent production window (Label Studio project and
    tasks when labelling.label_studio_url is set; else tasks.json and to_label.csv)."""
    scope = load(scope_file, workspace)
    prepare(scope)
    from flows.label import label_export

    done = label_export(scope, reason)
    print_json(done)
    if done["batch"] is None:
        print("nothing to label: no consented audio that was not exported yet", file=sys.stderr)


@label_app.command("import")
def import_(
    export_file: Annotated[
        Path | None,
        typer.Argument(help="a Label Studio JSON export (default: pull from its API)"),
    ] = None,
    scope_file: ScopeFile = DEFAULT_SCOPE,
    workspace: Workspace = None,
    no_trigger: Annotated[bool, typer.Option(help="import only; never retrain")] = False,
) -> None:
    """Import finished annotations (quarantining empty, skipped or malformed ones with their
    reasons), then start the retrain if enough labels are in."""
    scope = load(scope_file, workspace)
    prepare(scope)
    from flows.label import label_import
    from tasks.label_studio import LabelStudioError

    try:
        print_json(label_import(scope, export_file, trigger=not no_trigger))
    except (ValueError, LabelStudioError) as exc:
        print(f"label import failed: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None


@label_app.command("status")
def status(scope_file: ScopeFile = DEFAULT_SCOPE, workspace: Workspace = None) -> None:
    """The batches (tasks, labelled, open), the labels no retrain has taken, and whether the
    retrain is due."""
    scope = load(scope_file, workspace)
    prepare(scope)
    from flows.label import label_status

    print_json(label_status(scope))
