"""Overload alone against a real `bentoml serve`: `python -m bench.overload [--out DIR]` ->
DIR/overload.json (bench/results by default) and a printed table. `bench faults` runs the
same measurement (`measure`) on its own server and keeps these keys in faults.json.

Each crowd (64, then 256 phones) uploads in two waves; every answer must be a 200 or a 503
with Retry-After. Beside the client's wall times, it records:
- which layer refused each 503 (`refused_by`: the upload gate before the body is read, or
  the batcher after it), since only the gate's refusals can be quick;
- the server's own time of each answer (BentoML's access log, which sits in front of the
  gate), which tells the client's and the machine's share from the service's;
- a GET /healthz on a new connection every 20 ms during the waves (`probe_*`): how late a
  worker's event loop takes a request that needs nothing, while the crowd loads it;
- the same crowd asking GET /healthz right after (`healthz_*`): what this client and this
  machine add to any answer at that concurrency, the ceiling the refusals are read against
  (`overload_refusal_over_healthz_p99_<c>`: 1.0 is a refusal as quick as a health check).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import (
    Server,
    burst,
    healthz_burst,
    healthz_probe,
    make_store,
    percentile,
    server_times,
    start_tuned,
    stop_server,
)
from bench.mutations import encode
from bench.report import write_results

CONCURRENCIES = (64, 256)
ROUNDS = 2  # waves per crowd; the second reuses the first's connections


def measure(
    server: Server, wav: bytes, concurrencies: tuple[int, ...] = CONCURRENCIES
) -> dict[str, Any]:
    """The overload figures of `server` (the faults.json keys, and the ratios to healthz)."""
    rows, non_503_5xx = [], 0
    figures: dict[str, Any] = {}
    for concurrency in concurrencies:
        offset = server.log.stat().st_size
        wall, cpu = time.perf_counter(), time.process_time()
        with healthz_probe(server.url) as probe:
            result = burst(server.url, wav, concurrency, rounds=ROUNDS)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        served = server_times(server.log, offset)
        ceiling = healthz_burst(server.url, concurrency)
        summary = result.summary()
        refusal, healthz = summary["refused_p99_ms"], ceiling["healthz_p99_ms"]
        ratio = round(refusal / healthz, 2) if isinstance(refusal, float) and healthz else None
        rows.append(
            summary
            | ceiling
            | {
                # this client's own CPU over the waves, against their wall time: on a
                # machine the server shares, what the client takes from it
                "burst_wall_s": round(wall, 2),
                "client_cpu_s": round(cpu, 2),
                "probe_n": len(probe),
                "probe_p50_ms": percentile(probe, 50),
                "probe_p99_ms": percentile(probe, 99),
                "server_admitted_p99_ms": percentile(served.get(200, []), 99),
                "server_refused_p50_ms": percentile(served.get(503, []), 50),
                "server_refused_p99_ms": percentile(served.get(503, []), 99),
            }
        )
        non_503_5xx += result.non_503_5xx
        figures[f"overload_refusal_p99_ms_{concurrency}"] = refusal
        figures[f"overload_admitted_p99_ms_{concurrency}"] = summary["admitted_p99_ms"]
        figures[f"overload_refusal_over_healthz_p99_{concurrency}"] = ratio
        # the same refusals timed by the server (its access log): the service's own share
        figures[f"overload_server_refusal_p99_ms_{concurrency}"] = rows[-1]["server_refused_p99_ms"]
        figures[f"overload_client_cpu_over_wall_{concurrency}"] = (
            round(cpu / wall, 2) if wall else None
        )
    return {"overload_non_503_5xx": non_503_5xx, **figures, "overload": rows}


def main(out: Path, **serving: object) -> dict[str, Any]:
    """A fresh server (the default serving settings, `serving` overriding), the crowds."""
    wav = encode("WAV", "PCM_16", 16000, 1, 2.0)
    root = Path(tempfile.mkdtemp(prefix="bench-overload-"))
    try:
        server = start_tuned(make_store(root), root, **serving)
        try:
            load_before = os.getloadavg()[0]
            figures = measure(server, wav)
        finally:
            stop_server(server)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    figures = {"load_avg_1m_before": round(load_before, 2), **figures}
    write_results(out, "overload", figures)
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    main(parser.parse_args().out)
