"""What every `voicecycle` command shares: the Typer app, the common options, loading the scope
and bringing up the local Prefect server before a flow is imported."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from data_contracts.scoping import Scope, load_scope
from flows.cli.failures import EXIT_CODES_HELP, PortInUse, ServerUnreachable, port_in_use

app = typer.Typer(
    name="voicecycle",
    help="The full cycle of a voice-search speech recogniser: scope, data, augmentation, "
    "training, serving, monitoring, retraining.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=EXIT_CODES_HELP,
)


@app.callback()
def _options(
    debug: Annotated[
        bool,
        typer.Option("--debug", help="show the traceback of an expected failure as well"),
    ] = False,
) -> None:
    # read by flows.cli.main before any command runs (it decides how failures are reported)
    del debug


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
Suite = Literal["data", "serve", "train", "faults", "scale", "decoding", "kokoro", "human"]
Profile = Literal["default", "quality"]


def load(scope_file: Path, workspace: Path | None) -> Scope:
    scope = load_scope(scope_file)
    return scope.with_workspace(workspace) if workspace else scope


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def prepare(scope: Scope, quiet: bool = False) -> str:
    """The local Prefect server up (started or reused); its UI address. Call it before
    importing a flow: Prefect reads its settings (the API address) once, at import."""
    from deployments.local import server_healthy, start_server

    port = scope.state.prefect_port
    if not server_healthy(scope):
        if scope.state.prefect_api_url is not None:
            raise ServerUnreachable(
                f"the Prefect server at state.prefect_api_url ({scope.state.prefect_api_url}) "
                "does not answer; start it (`voicecycle team up` for the team profile) or "
                "remove state.prefect_api_url to use the embedded server"
            )
        if port_in_use("127.0.0.1", port):
            raise PortInUse(
                f"port {port} (state.prefect_port) is taken by a program that is not a "
                "Prefect server; stop it or set state.prefect_port to a free port"
            )
    ui = start_server(scope)
    if not quiet:
        print(f"Prefect UI: {ui}", file=sys.stderr)
    return ui
