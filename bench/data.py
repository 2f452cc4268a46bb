"""Data benchmark: corpus synthesis rate and ingestion rate (probing included) at the scope's
default corpus size, on this machine's cores.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from bench.report import write_results
from data_contracts.scoping import Scope


def main(scope: Scope, out_dir: Path) -> dict[str, float]:
    """Synthesise the default corpus into a scratch folder, ingest it, report rates.

    Both steps run as the ingest flow runs them: shards mapped on the scope's task runner.
    """
    from flows.ingest import probe_and_version, synthesise_corpus
    from models.cores import available_cores
    from tasks.fanout import max_workers, task_runner

    source = next(s for s in scope.sources if s.kind == "synthetic")
    assert source.synthetic is not None
    n = source.synthetic.n_utterances
    scratch = scope.state.workspace / "bench" / "data"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    bench_scope = scope.model_copy(update={"sources": [source]}).with_workspace(scratch)
    workers = max_workers(bench_scope)
    t0 = time.perf_counter()
    synthesis_runner = task_runner(bench_scope, tasks_start_processes=True)
    manifest = synthesise_corpus.with_options(task_runner=synthesis_runner)(
        source, bench_scope.state.path("corpus_dir"), workers
    )
    synth_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = probe_and_version.with_options(task_runner=task_runner(bench_scope))(
        bench_scope, [manifest]
    )
    ingest_s = time.perf_counter() - t0
    figures = {
        "utterances": n,
        "cores": available_cores(),
        "workers": workers,
        "synthesis_seconds": round(synth_s, 2),
        "synthesis_utterances_per_second": round(n / synth_s, 1),
        "ingestion_seconds": round(ingest_s, 2),
        "ingestion_rows_per_second": round(result.total / ingest_s, 1),
        "accepted": result.accepted,
        "quarantined": len(result.quarantined),
    }
    write_results(out_dir, "data", figures)
    shutil.rmtree(scratch, ignore_errors=True)
    return figures
