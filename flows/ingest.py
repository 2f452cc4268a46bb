"""Ingest: scope -> sources (synthetic corpus, manifests) -> contracts -> a dataset version."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import flow

from data_contracts.scoping import Scope
from tasks.ingestion import enforce_quarantine_limit, ingest_manifests
from tasks.reports import publish_ingestion_report
from tasks.scoping import validate_scope
from tasks.sources import read_source, synthesize_corpus


@flow(name="ingest", log_prints=True)
def ingest(scope: Scope, summary_path: Path | None = None) -> str:
    """Validate the scope, read every source, quarantine bad rows, write a dataset version."""
    validate_scope(scope)
    state = scope.state
    frames, manifest_dirs, roots = [], [], []
    for source in scope.sources:
        manifest = (
            synthesize_corpus(source, state.path("corpus_dir"))
            if source.kind == "synthetic"
            else Path(str(source.path))
        )
        raw, folder, root = read_source(manifest, source)
        frames.append(raw)
        manifest_dirs += [folder] * len(raw)
        roots += [root] * len(raw)
    result = ingest_manifests(
        pd.concat(frames, ignore_index=True),
        manifest_dirs,
        roots,
        state.path("datasets_dir"),
        scope.data_rules,
        scope.audio,
        scope.split,
    )
    publish_ingestion_report(result, state.path("reports_dir"), summary_path)
    return enforce_quarantine_limit(result)
