"""`voicecycle bench faults`: hostile input, overload, a killed worker and a soak, measured
against a real `bentoml serve` -> bench/results/faults.json and a printed table.

What is not run here is reported as null with a reason (`not_run`), never as a made-up 0.
"""

from __future__ import annotations

import random
import resource
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench.api_fuzz import fuzz_api
from bench.harness import (
    Server,
    kill_tree,
    locked_log,
    make_store,
    process_tree,
    start_tuned,
    stop_server,
    tree_rss,
)
from bench.kills import disk_full_with_local_server, prefect_server_kill, worker_kill_during_retrain
from bench.mutations import MUTATIONS, check_decoder, encode, mutated, seed_files
from bench.overload import measure as measure_overload
from bench.report import write_results
from bench.service_kill import service_kill_during_switch
from data_contracts.scoping import AudioScope, DataRules, Scope
from tasks.ingestion import RowJob, process_row

ADMIN = {"Authorization": "Bearer real-server-token"}
NOT_RUN: dict[str, str] = {}


def fuzz_decoders(cases: int, probe_cases: int, seed: int = 0) -> dict[str, Any]:
    """Random and mutated audio through the upload decoder and the ingestion probe."""
    rng, seeds = random.Random(seed), seed_files()
    crashes: list[str] = []
    slowest = 0.0
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tmp = Path(tempfile.mkdtemp(prefix="faults-probe-"))
    try:
        for i in range(cases + probe_cases):
            if rng.random() < 0.15:
                data = rng.randbytes(rng.randrange(1024))
            else:
                names = rng.sample(sorted(MUTATIONS), rng.randint(1, 3))
                data = mutated(seeds[rng.choice(sorted(seeds))], names, rng)
            started = time.perf_counter()
            try:
                if i < cases:
                    check_decoder(data)
                else:
                    (tmp / "clip.wav").write_bytes(data)
                    row, reason = process_row(
                        RowJob(i, _row(), tmp / "clip.wav", tmp), tmp, DataRules(), AudioScope()
                    )
                    assert (row is None) != (reason is None)
            except Exception as exc:  # anything but a typed refusal is a crash
                crashes.append(f"{type(exc).__name__}: {exc}"[:200])
            slowest = max(slowest, time.perf_counter() - started)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "fuzz_cases": cases + probe_cases,
        "fuzz_probe_cases": probe_cases,
        "fuzz_crashes": len(crashes),
        "fuzz_crash_examples": crashes[:5],
        "fuzz_slowest_case_s": round(slowest, 3),
        "fuzz_max_rss_growth_mb": round(
            (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024, 1
        ),
    }


def _row() -> dict[str, str]:
    fields = ("voice", "synthesizer", "intent", "entities", "era", "source")
    return {"utterance_id": "clip", "audio_path": "clip.wav", "transcript": "play jazz"} | {
        f: "x" for f in fields
    }


def kill_worker_under_load(server: Server, wav: bytes) -> dict[str, Any]:
    """SIGKILL one service worker while 8 clients upload; what was answered must be logged."""
    answered: list[str] = []
    errors: list[int] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=60) as client:
            while not stop.is_set():
                try:
                    r = client.post(f"{server.url}/transcribe", files={"audio": wav})
                except httpx.TransportError:
                    continue  # the killed worker's connections are reset
                if r.status_code == 200:
                    answered.append(r.json()["request_id"])
                elif r.status_code >= 500 and r.status_code != 503:
                    errors.append(r.status_code)

    threads = [threading.Thread(target=load) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(5)
    workers = process_tree(server.process)[1:]
    kill_tree(workers[-1:])  # one worker; the arbiter restarts it
    time.sleep(15)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    recovered = httpx.get(f"{server.url}/readyz", timeout=10).status_code == 200
    lost = set(answered) - set(server.logged()["request_id"])
    return {"answered": len(answered), "lost": len(lost), "5xx": len(errors), "ok": recovered}


def corrupt_model_in_store(server: Server, store_root: Path, version: int) -> dict[str, Any]:
    """A new model in the store whose weights are truncated: the service must stay on the
    model it serves, ready, and answering."""
    before = httpx.get(f"{server.url}/metadata", timeout=10).json()["model_version"]
    make_store(store_root, version=version, corrupt=True)
    deadline = time.monotonic() + 60
    while "model poll or audio purge failed" not in server.log_tail():
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    wav = encode("WAV", "PCM_16", 16000, 1, 1.0)
    answer = httpx.post(f"{server.url}/transcribe", files={"audio": wav}, timeout=60)
    ready = httpx.get(f"{server.url}/readyz", timeout=10).status_code == 200
    served = answer.json().get("model_version") if answer.status_code == 200 else None
    return {"ready": ready, "served_before": before, "served_after": served,
            "ok": ready and served == before}  # fmt: skip


def locked_log_refusals(server: Server, wav: bytes, n: int = 4) -> dict[str, Any]:
    """While another writer holds the prediction log: every answer a 503 log_unavailable,
    how long each took (the scope's serving.log_busy_timeout_ms, then the refusal)."""
    codes, ms = [], []
    with httpx.Client(timeout=120) as client, locked_log(server.workspace):
        for _ in range(n):
            started = time.perf_counter()
            r = client.post(f"{server.url}/transcribe", files={"audio": ("q.wav", wav)})
            ms.append((time.perf_counter() - started) * 1000)
            codes.append(r.json().get("code") if r.status_code == 503 else str(r.status_code))
    return {"codes": codes, "max_ms": round(max(ms), 1)}


def soak(
    servers: list[Server], store_root: Path, minutes: float, switch_minutes: float, wav: bytes
) -> dict[str, Any]:
    """Mixed traffic (good and bad uploads) for `minutes`, spread over `servers` (replicas
    sharing one store and one log, or a single service), a new model version every
    `switch_minutes` (each replica follows the store's latest at its next poll)."""
    bad = [b"", b"not audio" * 10, wav[: len(wav) // 2]]
    errors, answered = 0, []
    versions: list[set[str]] = [set() for _ in servers]
    rss_start = [tree_rss(server) for server in servers]
    started = time.monotonic()
    end, version, n = started + minutes * 60, 1, 0
    with httpx.Client(timeout=60) as client:
        while time.monotonic() < end:
            if time.monotonic() - started >= version * switch_minutes * 60:
                version += 1
                make_store(store_root, version=version)
            i, n = n % len(servers), n + 1
            body = random.choice([wav, wav, wav, *bad])
            try:
                r = client.post(f"{servers[i].url}/transcribe", files={"audio": body})
            except httpx.TransportError:
                errors += 1
                continue
            if r.status_code == 200:
                answered.append(r.json()["request_id"])
                versions[i].add(r.json()["model_version"])
            elif r.status_code >= 500:
                errors += 1
    logged = servers[0].logged()["request_id"]  # the log they share (or the one service's)
    lost = set(answered) - set(logged)
    growth = [
        round((tree_rss(server) - start) / start, 4) if start else None
        for server, start in zip(servers, rss_start, strict=True)
    ]
    known = [g for g in growth if g is not None]
    return {
        "errors": errors,
        "answered": len(answered),
        "lost": len(lost),
        "duplicated": int(logged.duplicated().sum()),
        "growth": max(known) if known else None,  # the replica that grew most
        "growth_by_server": growth,
        "switches": version - 1,
        "versions_served": sorted(set().union(*versions), key=int),
        "versions_by_server": [sorted(v, key=int) for v in versions],
    }


def soak_figures(soaked: dict[str, Any], minutes: float, switch_minutes: float) -> dict[str, Any]:
    """The soak's keys in the results (faults.json and faults-team.json alike)."""
    return {
        "soak_minutes": minutes,
        "soak_errors": soaked["errors"],
        "soak_rss_growth": soaked["growth"],
        "soak_requests": soaked["answered"],
        "soak_versions_served": soaked["versions_served"],
        "soak_switch_minutes": switch_minutes,
        "soak_switches": soaked["switches"],
    }


def main(
    scope: Scope, out: Path, soak_minutes: float = 2.0, switch_minutes: float = 5.0
) -> dict[str, Any]:
    del scope  # the servers here run on their own scope under a temporary folder
    figures: dict[str, Any] = fuzz_decoders(cases=4000, probe_cases=500)
    wav = encode("WAV", "PCM_16", 16000, 1, 2.0)
    root = Path(tempfile.mkdtemp(prefix="bench-faults-"))
    try:
        stored = make_store(root)
        server = start_tuned(stored, root)
        try:
            api = fuzz_api(server.url, max_examples=60)
            admin = fuzz_api(server.url, max_examples=20, headers=ADMIN)
            figures["schemathesis_cases"] = api.cases + admin.cases
            figures["schemathesis_5xx"] = len(api.five_xx) + len(admin.five_xx)
            figures["schema_violations"] = len(api.violations) + len(admin.violations)
            figures["schemathesis_examples"] = (api.five_xx + api.violations + admin.violations)[:5]
            figures |= measure_overload(server, wav)  # bench/overload.py, the same keys
            killed = kill_worker_under_load(server, wav)
            figures["kills_survived"] = int(killed["ok"] and killed["lost"] == 0)
            figures["killed"] = [f"a service worker under load (SIGKILL): {killed}"]
            figures["acknowledged_lost"] = killed["lost"]
            locked = locked_log_refusals(server, wav)
            figures["locked_log_codes"] = locked["codes"]
            figures["locked_log_refusal_max_ms"] = locked["max_ms"]
            soaked = soak([server], root, soak_minutes, switch_minutes, wav)
            figures["acknowledged_lost"] += soaked["lost"]
            figures |= soak_figures(soaked, soak_minutes, switch_minutes)
            corrupt = corrupt_model_in_store(server, root, version=soaked["switches"] + 2)
            figures["killed"].append(
                f"the newest model in the store (truncated weights) under a running service: "
                f"{corrupt}"
            )
            figures["kills_survived"] += int(corrupt["ok"])
        finally:
            stop_server(server)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    killed_server = prefect_server_kill(Path(tempfile.mkdtemp(prefix="bench-faults-prefect-")))
    figures["killed"].append(f"the Prefect server during `voicecycle ingest` (SIGKILL): "
                             f"{killed_server}")  # fmt: skip
    figures["kills_survived"] += int(killed_server["ok"])
    figures["partial_versions_after_kills"] = killed_server["partial_versions"]
    worker = worker_kill_during_retrain(Path(tempfile.mkdtemp(prefix="bench-faults-worker-")))
    figures["killed"].append(f"the Prefect worker and its flow-run process during a retrain "
                             f"(SIGKILL): {worker}")  # fmt: skip
    figures["kills_survived"] += int(worker["ok"])
    figures["partial_versions_after_kills"] += worker["partial_versions"] + len(
        worker["registry_after_kill"]["versions_without_metrics"]
    )
    service = service_kill_during_switch(Path(tempfile.mkdtemp(prefix="bench-faults-switch-")))
    figures["killed"].append(f"the whole service during a model switch (SIGKILL): {service}")
    figures["kills_survived"] += int(service["ok"])
    figures["acknowledged_lost"] += service["lost"]
    full = disk_full_with_local_server(Path(tempfile.mkdtemp(prefix="bench-faults-disk-")))
    figures["disk_full"] = {k: v for k, v in full.items() if k != "stderr"} | {
        "messages": {k: v.strip().splitlines()[-2:] for k, v in full["stderr"].items()}
    }
    figures["disk_full_partial_versions"] = full["partial_versions"]
    for key in NOT_RUN:
        figures[key] = None
    figures["not_run"] = NOT_RUN | {
        "kills": "the trainer (kill -9 mid-epoch, then train --resume) is killed in CI "
        "(tests/faults/test_trainer_kill.py), not here",
    }
    write_results(out, "faults", figures)
    return figures
