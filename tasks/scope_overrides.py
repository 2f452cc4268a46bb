"""Scope overrides an operator gives on the command line: one manifest instead of the scope's
sources, another port for the service. Each returns a new, validated Scope."""

from __future__ import annotations

from pathlib import Path

from data_contracts.scoping import DataSource, Scope
from tasks.manifests import ManifestKind, detect_kind


def with_manifest(
    scope: Scope,
    manifest: Path,
    kind: ManifestKind | None = None,
    data_root: Path | None = None,
    source_name: str = "manifest",
) -> Scope:
    """The scope with one manifest (its kind from the extension unless given) as its source."""
    source = DataSource(
        kind=kind or detect_kind(manifest),
        name=source_name,
        path=manifest,
        data_root=data_root,
    )
    return scope.model_copy(update={"sources": [source]})


def with_port(scope: Scope, port: int | None) -> Scope:
    """The scope with the service on another port (None: unchanged)."""
    if port is None:
        return scope
    return scope.model_copy(update={"serving": scope.serving.model_copy(update={"port": port})})
