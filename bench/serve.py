"""Serving benchmark: a real `bentoml serve` on loopback under bounded concurrent load, against
the raw in-process throughput of the same recogniser on the same clips.

What it does, all under a scratch folder (`state.workspace/bench/serve`, removed at the end;
the server and the load generator are in bench/serve_harness.py, the model and the clips in
bench/serve_clips.py):

1. the recogniser: the registry's champion if the workspace's MLflow has one, else a random-init
   `Recognizer` (default `AcousticModelConfig`, beam decoder with a bigram LM over the clips'
   transcripts, int8 as `training.int8_inference` says, as a trained one runs), imported
   into a scratch BentoML home (in a child process: this process's BentoML home, if any, is
   left alone);
2. 3-s clips: synthesised voice-search queries (16 kHz mono PCM-16 WAV), padded or cut to 3 s;
   speech-shaped noise where speech synthesis is unavailable;
3. `bentoml serve` on 127.0.0.1 and a free port, with BENTOML_HOME and the service's template
   arguments (deployments/arguments.py: scope, workspace, model tag) pointing at scratch state
   (its prediction log is the benchmark's own);
4. for each concurrency (1, 8, 32): a warm-up, then `requests` POSTs of /transcribe from that
   many client threads (httpx, pre-encoded multipart bodies), recording client-side latency
   percentiles, throughput, errors, the server's own `latency_ms` (from its prediction log) and
   the batch sizes it formed (GET /metadata, before and after);
5. the server stopped (its whole process tree), then the raw figures: `Recognizer.transcribe`
   in this process on the same clips, in batches of `serving.max_batch_size`, with the torch
   thread count the server reported, as the server runs it (int8 if the saved recogniser
   says so) and, for reference, in float; one such process per core at once (the server runs
   `serving.workers` processes, one per core by default); and the machine's real ceiling:
   the CPU time a clip of the acoustic model (batched) and of the beam search (per clip, which
   batching does not share), each timed on its own with one thread, every core doing only
   that. Each is loaded in this thread and run in another, as the server runs the work
   (bench/serve_raw.py says why: decoded in the thread that loaded it, the beam search took
   up to 2x the CPU, and the "ceiling" was below what the server did);
6. what int8 costs: test WER in float and in int8 on the newest augmented test split;
7. where the server's CPU per request goes (`profile_c8`; py-spy, a measuring tool in the
   lock, samples the server: `{"skipped": ...}` where it is missing): a last load at
   concurrency 8, after the timed ones, every thread of the server sampled
   (bench/serve_profile.py `profile_load`), each thread's CPU split over what its samples
   were doing (HTTP and multipart parsing, upload decoding, the model, beam decoding, the
   batcher, audio features, the prediction log, metrics, the response, the middlewares, the
   event loop); `ms_per_req` as profiled and
   `ms_per_req_timed` (the shares times the timed load's server CPU per request).

`serve.json` holds `p50/p95/p99_ms_c{N}`, `rps_c{N}`, `errors_c{N}`, `batch_sizes_c{N}`,
`raw_rps`, `http_over_raw` (best HTTP throughput / raw), `http_over_raw_c8`,
`raw_rps_all_cores`, `http_over_raw_all_cores` and `http_over_raw_all_cores_c8` (concurrency 8
against one process per core), `model_cpu_ms_per_clip` and `decode_cpu_ms_per_clip`,
`ceiling_rps_all_cores` (cores * 1000 / their sum), `http_over_ceiling` and
`http_over_ceiling_c8` (the best and the concurrency-8 throughput over it: the target),
`server_cpu_over_work_c8` (the server's CPU a request over the model and beam search's),
`server_cpu_ms_per_req_c{N}` (the server's process tree) and
`model_cpu_ms_per_req_c{N}` (of which the model threads in `transcribe`, summed over the
workers' /metadata; `workers_seen_c{N}` when not every worker answered both before and
after the load: then it and `batch_sizes_c{N}` cover only those), `wer_test_float/int8`
and `errors` (the total over every level, valid input only: every error counts), and the
scope's serving targets next to what was measured: `target_p95_latency_ms` against `p95_ms_c8`
(`p95_target_met`) and `target_min_throughput_rps` against the best req/s
(`throughput_target_met`). The load generator shares the machine's cores with the server, as a
co-located client would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from bench.report import write_results
from bench.serve_clips import CLIP_SECONDS, CLIP_SEED, champion, make_clips, random_recognizer
from bench.serve_harness import (
    batch_sizes,
    import_model,
    model_cpu_ms,
    multipart_body,
    run_load,
    server_latencies,
    start_server,
    stop_server,
    tree_cpu_s,
    worker_batching,
)
from bench.serve_profile import profile_load
from bench.serve_raw import ceiling_figures, raw_throughput, raw_throughput_all_cores, work_cpu_ms
from data_contracts.scoping import Scope

CONCURRENCIES = (1, 8, 32)
REQUESTS = 200
PROFILE_CONCURRENCY = 8
PROFILE_REQUESTS = 1000
INT8_CHECK_CLIPS = 400


def _pct(values: Sequence[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 1) if values else float("nan")


def int8_accuracy(
    scope: Scope, recognizer_dir: Path, limit: int = INT8_CHECK_CLIPS
) -> dict[str, Any]:
    """WER of the recogniser in float and in int8 on the newest augmented test split (clean
    and in-car, held-out voices): what quantisation costs. Empty without a dataset."""
    from models.recognizer import Recognizer
    from tasks.augmentation import load_augmented
    from tasks.evaluation import wer
    from tasks.inference import transcribe_manifest

    versions = sorted(
        scope.state.path("augmented_dir").glob("aug-*/manifest.csv"),
        key=lambda p: p.stat().st_mtime,
    )
    if not versions:
        return {}
    data_dir = versions[-1].parent
    manifest = load_augmented(data_dir)
    test = manifest[manifest["split"] == "test"]
    test = test.sample(min(limit, len(test)), random_state=0)
    loaded = Recognizer.load(recognizer_dir)
    out: dict[str, Any] = {"accuracy_clips": len(test), "accuracy_dataset": data_dir.name}
    for name, int8 in (("float", False), ("int8", True)):
        hyps = transcribe_manifest(loaded.with_int8(int8), test, data_dir, progress=False)
        out[f"wer_test_{name}"] = round(wer(list(test["transcript"]), list(hyps["hypothesis"])), 4)
    return out


# -- the benchmark -------------------------------------------------------------------------------


def main(
    scope: Scope,
    out_dir: Path,
    *,
    requests: int = REQUESTS,
    concurrencies: Sequence[int] = CONCURRENCIES,
    service: str | None = None,
    pythonpath: Sequence[Path] = (),
    name: str = "serve",
    profile: bool = True,
) -> dict[str, Any]:
    """Run the serving benchmark; write out_dir/<name>.json and return the figures.

    `service` and `pythonpath` serve A/B comparisons (another service import string, and
    where to import it from, e.g. another checkout). With `profile` (and py-spy installed),
    a last load at concurrency 8, after the timed ones, is sampled: `profile_c8`.
    """
    scratch = (scope.state.workspace / "bench" / "serve").resolve()
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    process: subprocess.Popen[bytes] | None = None
    try:
        load_avg = os.getloadavg()[0]
        wavs, texts, clip_kind = make_clips(seed=CLIP_SEED)
        found = champion(scope, scratch / "download")
        recognizer_dir, metadata = found or random_recognizer(
            scratch / "model", texts, scope.training.int8_inference
        )
        home = scratch / "bentoml"
        tag = import_model(recognizer_dir, scope.registry.model_name, metadata, home)
        workspace = scratch / "workspace"
        scope_file = scratch / "scope.yaml"
        scope_file.write_text(
            yaml.safe_dump(scope.with_workspace(workspace).model_dump(mode="json"), sort_keys=False)
        )
        log = scratch / "server.log"
        process, url = start_server(home, workspace, scope_file, tag, log, service, pythonpath)
        bodies = [multipart_body(w) for w in wavs]
        figures: dict[str, Any] = {
            "model": metadata["source"],
            "clips": f"{len(wavs)} x {CLIP_SECONDS:g} s {clip_kind}, 16 kHz mono PCM-16 WAV",
            "cores": os.cpu_count() or 1,
            "load_avg_1m_before": round(load_avg, 2),
            "requests_per_level": requests,
        }
        import httpx

        workers = int(httpx.get(f"{url}/metadata", timeout=10).json().get("workers") or 1)
        errors = 0
        for concurrency in concurrencies:
            run_load(url, bodies, concurrency, max(16, 2 * concurrency))  # warm-up
            before = worker_batching(url, workers)
            cpu_before, own_before = tree_cpu_s(process.pid), time.process_time()
            result = run_load(url, bodies, concurrency, requests)
            server_cpu = tree_cpu_s(process.pid) - cpu_before
            client_cpu = time.process_time() - own_before
            after = worker_batching(url, workers)
            # a worker's counters only against its own: one that answered only before or only
            # after cannot be differenced (a difference over different workers went negative)
            both = set(before) & set(after)
            before = {pid: stats for pid, stats in before.items() if pid in both}
            after = {pid: stats for pid, stats in after.items() if pid in both}
            formed = batch_sizes(after) - batch_sizes(before)
            model_cpu = model_cpu_ms(after) - model_cpu_ms(before)
            lat, statuses = result["latencies"], result["statuses"]
            failed = sum(n for status, n in statuses.items() if status != 200)
            errors += failed
            server = server_latencies(workspace, set(result["ids"]))
            c = concurrency
            figures |= {
                f"p50_ms_c{c}": _pct(lat, 50),
                f"p95_ms_c{c}": _pct(lat, 95),
                f"p99_ms_c{c}": _pct(lat, 99),
                f"rps_c{c}": round(len(lat) / result["wall_s"], 1),
                f"errors_c{c}": failed,
                f"server_p95_ms_c{c}": _pct(server, 95),
                # CPU per answered request: the server's process tree, and this load generator
                f"server_cpu_ms_per_req_c{c}": round(server_cpu * 1000 / max(1, len(lat)), 1),
                f"client_cpu_ms_per_req_c{c}": round(client_cpu * 1000 / max(1, len(lat)), 1),
                # of which the model (the model threads in `transcribe`); the rest is HTTP,
                # parsing, decoding, audio features, the log and the event loop
                # (per clip those workers ran: the batch sizes they formed)
                f"model_cpu_ms_per_req_c{c}": round(
                    model_cpu / max(1, sum(k * n for k, n in formed.items())), 1
                ),
                f"batch_sizes_c{c}": {str(k): v for k, v in sorted(formed.items())},
            }
            if len(both) < workers:  # the model CPU and batch sizes are of these workers only
                figures[f"workers_seen_c{c}"] = len(both)
            if failed:
                figures[f"statuses_c{c}"] = {str(k): v for k, v in sorted(statuses.items())}
        if profile:
            figures[f"profile_c{PROFILE_CONCURRENCY}"] = _profile(
                figures, url, process.pid, bodies, scratch
            )
        meta = httpx.get(f"{url}/metadata", timeout=10).json()
        stop_server(process)
        process = None
        threads = int(meta.get("torch_threads") or max(1, (os.cpu_count() or 2) - 1))
        batch = scope.serving.max_batch_size
        n_raw = max(requests, 8 * batch)
        raw = raw_throughput(recognizer_dir, wavs, batch, threads, n_raw)
        raw_float = raw_throughput(recognizer_dir, wavs, batch, threads, n_raw, int8=False)
        cores = int(figures["cores"])
        raw_all = raw_throughput_all_cores(recognizer_dir, wavs, batch, n_raw, cores)
        best = max(figures[f"rps_c{c}"] for c in concurrencies)
        served_int8 = bool(json.loads((recognizer_dir / "config.json").read_text()).get("int8"))
        figures |= {
            "torch_threads": threads,
            "max_batch_size": batch,
            "int8": served_int8,
            "raw_rps": round(raw, 1),
            "raw_rps_float": round(raw_float, 1),
            "raw_rps_all_cores": round(raw_all, 1),
            "http_over_raw_all_cores": round(best / raw_all, 3),
            "server_workers": int(meta.get("workers") or 1),
            "http_over_raw": round(best / raw, 3),
            "errors": errors,
            "load_avg_1m_after": round(os.getloadavg()[0], 2),
        }
        if 8 in concurrencies:
            figures["http_over_raw_c8"] = round(figures["rps_c8"] / raw, 3)
            figures["http_over_raw_all_cores_c8"] = round(figures["rps_c8"] / raw_all, 3)
        work = work_cpu_ms(recognizer_dir, wavs, batch, n_raw)
        figures |= ceiling_figures(work, cores, figures, concurrencies)
        figures |= target_figures(scope, figures, concurrencies)
        figures |= int8_accuracy(scope, recognizer_dir)
        _print_table(figures, concurrencies)
        write_results(out_dir, name, figures)
        return figures
    finally:
        if process is not None:
            stop_server(process)
        shutil.rmtree(scratch, ignore_errors=True)
        try:
            scratch.parent.rmdir()  # workspace/bench, if nothing else is in it
        except OSError:
            pass


def _profile(
    figures: dict[str, Any],
    url: str,
    server_pid: int,
    bodies: Sequence[tuple[bytes, str]],
    scratch: Path,
) -> dict[str, Any]:
    """`profile_load` at PROFILE_CONCURRENCY, its shares also applied to the server CPU per
    request of the timed (unprofiled) load at that concurrency, if it ran."""
    c = PROFILE_CONCURRENCY
    profiled = profile_load(url, server_pid, bodies, c, PROFILE_REQUESTS, scratch)
    timed = figures.get(f"server_cpu_ms_per_req_c{c}")
    if "share" in profiled and timed is not None:
        profiled["ms_per_req_timed"] = {
            k: round(share * timed, 2) for k, share in profiled["share"].items()
        }
    return profiled


def target_figures(
    scope: Scope, figures: dict[str, Any], concurrencies: Sequence[int]
) -> dict[str, Any]:
    """The scope's serving targets next to what was measured: p95 at concurrency 8 (or the
    highest level run below it) and the best throughput of any level."""
    level = max((c for c in concurrencies if c <= 8), default=min(concurrencies))
    p95 = figures[f"p95_ms_c{level}"]
    best = max(figures[f"rps_c{c}"] for c in concurrencies)
    targets = scope.targets
    return {
        "target_p95_latency_ms": targets.p95_latency_ms,
        "target_level": level,
        "p95_target_met": bool(p95 <= targets.p95_latency_ms),
        "target_min_throughput_rps": targets.min_throughput_rps,
        "throughput_target_met": bool(best >= targets.min_throughput_rps),
    }


def _print_table(figures: dict[str, Any], concurrencies: Sequence[int]) -> None:
    print(f"\nserving: {figures['model']}, {figures['clips']}")
    header = ("conc", "p50 ms", "p95 ms", "p99 ms", "req/s", "errors")
    print(" ".join(f"{h:>8}" for h in header) + "  batches")
    for c in concurrencies:
        row = (c, *(figures[f"{k}_c{c}"] for k in ("p50_ms", "p95_ms", "p99_ms", "rps", "errors")))
        print(" ".join(f"{v:>8}" for v in row) + f"  {figures[f'batch_sizes_c{c}']}")
    if "wer_test_int8" in figures:
        print(
            f"test WER on {figures['accuracy_clips']} held-out clips: float "
            f"{figures['wer_test_float']}, int8 {figures['wer_test_int8']}"
        )
    print(
        f"raw in-process: {figures['raw_rps']} clips/s "
        f"({'int8' if figures['int8'] else 'float'}; float {figures['raw_rps_float']}) "
        f"at batch {figures['max_batch_size']}, "
        f"{figures['torch_threads']} torch threads; HTTP/raw {figures['http_over_raw']}; "
        f"{figures['raw_rps_all_cores']} clips/s with one process per core "
        f"(HTTP over that {figures['http_over_raw_all_cores']})"
    )
    print(
        f"the machine's ceiling: {figures['ceiling_rps_all_cores']} clips/s, every core on "
        f"the model ({figures['model_cpu_ms_per_clip']} CPU ms a clip) and the beam search "
        f"({figures['decode_cpu_ms_per_clip']} ms); HTTP over it {figures['http_over_ceiling']}"
        + (
            f", at concurrency 8 {figures['http_over_ceiling_c8']}"
            if "http_over_ceiling_c8" in figures
            else ""
        )
    )
    profiled = figures.get(f"profile_c{PROFILE_CONCURRENCY}", {})
    if "ms_per_req" in profiled:
        print(
            f"where the server's CPU per request goes at concurrency {PROFILE_CONCURRENCY} "
            f"(py-spy, {profiled['requests']} requests at {profiled['rps_profiled']} req/s): "
            f"{profiled['server_cpu_ms_per_req']} ms"
        )
        timed = profiled.get("ms_per_req_timed", {})
        for category, ms in sorted(profiled["ms_per_req"].items(), key=lambda kv: -kv[1]):
            share = 100 * profiled["share"][category]
            scaled = f"  ({timed[category]:.2f} ms of the timed load)" if category in timed else ""
            print(f"  {category:<20} {ms:>6.2f} ms {share:>5.1f} %{scaled}")
    elif profiled:
        print(f"profile skipped: {profiled.get('skipped')}")
    level = figures["target_level"]
    print(
        f"targets: p95 at concurrency {level} {figures[f'p95_ms_c{level}']} ms <= "
        f"{figures['target_p95_latency_ms']:g} ms: "
        f"{'pass' if figures['p95_target_met'] else 'FAIL'}; best throughput "
        f"{max(figures[f'rps_c{c}'] for c in concurrencies)} req/s >= "
        f"{figures['target_min_throughput_rps']:g} req/s: "
        f"{'pass' if figures['throughput_target_met'] else 'FAIL'}"
    )
