"""Ingest: scope -> sources (synthetic corpus, manifests) -> probe -> contracts -> a version.

The fan-out (synthesis shards, audio probing shards) runs in subflows whose task runner the
scope's `runtime` section chooses, so every shard is a task run in the Prefect UI.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow
from prefect.utilities.annotations import unmapped

from data_contracts.scoping import DataSource, Scope, SplitPolicy
from tasks.fanout import max_workers, task_runner
from tasks.ingestion import (
    IngestResult,
    discard_staging,
    enforce_quarantine_limit,
    plan_ingestion,
    probe_shard,
    version_dataset,
)
from tasks.reports import publish_ingestion_report
from tasks.scoping import validate_scope
from tasks.sources import combine_sources, plan_synthetic_corpus, publish_corpus, read_source
from tasks.synthesis import discard_partial, synthesise_shard


@flow(name="synthesise-corpus")
def synthesise_corpus(
    source: DataSource, corpus_root: Path, n_shards: int, split: SplitPolicy | None = None
) -> Path:
    """Render a synthetic source's corpus, one task run per shard; return its manifest."""
    plan = plan_synthetic_corpus(source, corpus_root, n_shards, split)
    rendered = synthesise_shard.map(
        unmapped(plan.audio_dir), unmapped(plan.seed), unmapped(plan.sample_rate), plan.shards
    )
    published = publish_corpus.submit(plan, wait_for=rendered, return_state=False)
    published.wait()  # finished or failed, no half-built folder stays (no-op once published)
    discard_partial(plan)
    rendered.result()  # a failed shard raises its own error, not "publish never ran"
    return published.result()


@flow(name="probe-and-version")
def probe_and_version(scope: Scope, manifests: list[Path]) -> IngestResult:
    """Probe every clip (one task run per shard), quarantine, split and version the dataset."""
    raw, folders, roots = combine_sources(
        [read_source(m, s) for m, s in zip(manifests, scope.sources, strict=True)]
    )
    plan = plan_ingestion(raw, folders, roots, scope.state.path("datasets_dir"), max_workers(scope))
    probed = probe_shard.map(
        plan.shards,
        unmapped(plan.staging / "audio"),
        unmapped(scope.data_rules),
        unmapped(scope.audio),
    )
    versioned = version_dataset.submit(
        raw,
        plan,
        probed,  # type: ignore[arg-type]  # Prefect hands the task the shards' results
        scope.state.path("datasets_dir"),
        scope.data_rules,
        scope.split,
    )
    versioned.wait()  # finished or failed, the staging folder goes
    discard_staging(plan)
    probed.result()  # a failed shard raises its own error, not "versioning never ran"
    return versioned.result()


@flow(name="ingest", log_prints=True)
def ingest(scope: Scope, summary_path: Path | None = None) -> str:
    """Validate the scope, read every source, quarantine bad rows, write a dataset version."""
    validate_scope(scope)
    synthesise = synthesise_corpus.with_options(
        task_runner=task_runner(scope, tasks_start_processes=True)
    )
    manifests = [
        synthesise(source, scope.state.path("corpus_dir"), max_workers(scope), scope.split)
        if source.kind == "synthetic"
        else Path(str(source.path))
        for source in scope.sources
    ]
    probe = probe_and_version.with_options(task_runner=task_runner(scope))
    result = probe(scope, manifests)
    publish_ingestion_report(result, scope.state.path("reports_dir"), summary_path)
    return enforce_quarantine_limit(result)
