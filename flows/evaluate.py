"""Evaluate: the champion, as served, on anyone's manifest of recordings (NeMo, Common Voice,
CSV) -> ingestion contracts (quarantine) -> transcribe -> WER/CER overall and per slice,
an HTML report and a summary."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from prefect import flow

from data_contracts.scoping import Scope
from flows.ingest import probe_and_version
from tasks.evaluation.external import (
    evaluation_scope,
    load_champion,
    score_dataset,
    write_evaluation,
)
from tasks.fanout import task_runner
from tasks.manifests import ManifestKind
from tasks.scoping import validate_scope


@flow(name="evaluate", log_prints=True)
def evaluate(
    scope: Scope,
    manifest: Path,
    kind: ManifestKind | None = None,
    data_root: Path | None = None,
) -> dict[str, Any]:
    """Score the champion on a manifest; usable rows only, the others quarantined."""
    validate_scope(scope)
    scoped = evaluation_scope(scope, manifest, kind, data_root)
    probe = probe_and_version.with_options(task_runner=task_runner(scoped))
    result = probe(scoped, [Path(manifest)])
    with tempfile.TemporaryDirectory(prefix="voicecycle-champion-") as tmp:
        champion = load_champion(scope, Path(tmp))
        per = score_dataset(champion, result)
    out_dir = (
        scope.state.path("evaluations_dir")
        / "reports"
        / f"{result.dataset_version}-model-{champion.version}"
    )
    return write_evaluation(per, result, champion, Path(manifest), out_dir)
