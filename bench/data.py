"""Data benchmark: corpus synthesis rate and ingestion rate (probing included) at the scope's
default corpus size, on this machine's cores.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from bench.report import write_results
from data_contracts.scoping import Scope


def main(scope: Scope, out_dir: Path) -> dict[str, float]:
    """Synthesise the default corpus into a scratch folder, ingest it, report rates."""
    from tasks.ingestion import ingest_manifests
    from tasks.manifests import read_manifest
    from tasks.synthesis import build_corpus, list_voices

    source = next(s for s in scope.sources if s.kind == "synthetic")
    assert source.synthetic is not None
    n = source.synthetic.n_utterances
    scratch = scope.state.workspace / "bench" / "data"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    voices = list_voices(seed=source.synthetic.seed, n=source.synthetic.n_voices)
    t0 = time.perf_counter()
    build_corpus(scratch / "corpus", n, source.synthetic.seed, voices=voices)
    synth_s = time.perf_counter() - t0
    raw = read_manifest(scratch / "corpus" / "manifest.csv", "synthetic")
    root = scratch / "corpus"
    t0 = time.perf_counter()
    result = ingest_manifests(
        raw,
        [root] * len(raw),
        [root] * len(raw),
        scratch / "datasets",
        scope.data_rules,
        scope.audio,
        scope.split,
    )
    ingest_s = time.perf_counter() - t0
    figures = {
        "utterances": n,
        "cores": os.cpu_count() or 1,
        "synthesis_seconds": round(synth_s, 2),
        "synthesis_utterances_per_second": round(n / synth_s, 1),
        "ingestion_seconds": round(ingest_s, 2),
        "ingestion_rows_per_second": round(len(raw) / ingest_s, 1),
        "accepted": result.accepted,
        "quarantined": len(result.quarantined),
    }
    write_results(out_dir, "data", figures)
    shutil.rmtree(scratch, ignore_errors=True)
    return figures
