"""What reaches the service process: BentoML template arguments, not environment variables.

`bentoml serve deployments.service:VoiceSearchASR --arg scope=PATH --arg workspace=DIR
--arg model_tag=TAG` hands these to the serving process and to every worker it spawns
(`bentoml.use_arguments`); `bentoml build --arg model_tag=TAG` stores them in the Bento, so
the built Bento serves the model it packs. Everything else the service needs comes from the
scope file they name.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict

SERVICE_IMPORT = "deployments.service:VoiceSearchASR"


class ServiceArguments(BaseModel):
    """The template arguments the service reads (all optional: defaults serve `Scope()`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scope: Path | None = None  # scope.yaml; none: the defaults of `Scope()`
    workspace: Path | None = None  # overrides the scope's `state.workspace`
    model_tag: str | None = None  # BentoML model tag; none: "<registry.model_name>:latest"


def serve_arguments(
    scope_path: Path | None, workspace: Path | None, model_tag: str | None
) -> list[str]:
    """The `--arg key=value` options that hand a scope, its workspace and a model tag to the
    service (paths made absolute: the server may run from another directory)."""
    arguments: list[str] = []
    if scope_path is not None:
        arguments += ["--arg", f"scope={scope_path.resolve()}"]
    if workspace is not None:
        arguments += ["--arg", f"workspace={workspace.resolve()}"]
    if model_tag:
        arguments += ["--arg", f"model_tag={model_tag}"]
    return arguments


def serve_command(host: str, port: int, arguments: Sequence[str] = ()) -> list[str]:
    """The `bentoml serve` command line for the service (run it from the repository root);
    `arguments` as made by `serve_arguments`."""
    return [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        SERVICE_IMPORT,
        "--host",
        host,
        "--port",
        str(port),
        *arguments,
    ]
