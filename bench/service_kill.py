"""The whole service `kill -9`ed during a model switch, driven as phones and an operator do:
uploads flow, a new model lands in the store (the service's poll picks it up) and an admin
asks for `POST /admin/reload`; while that switch runs every process of `bentoml serve` is
SIGKILLed. The service is started again on the same store and prediction log: it must serve
one whole model (the old or the new, named by /metadata and by every answer), and every
answer acknowledged before the kill must be in the log.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench.harness import (
    ADMIN_TOKEN,
    kill_tree,
    make_store,
    process_tree,
    start_tuned,
    stop_server,
)
from bench.mutations import encode


def service_kill_during_switch(root: Path, clients: int = 4) -> dict[str, Any]:
    """Kill the serving tree mid-switch, restart it, and read what it serves and logged."""
    wav = encode("WAV", "PCM_16", 16000, 1, 1.0)
    stored = make_store(root, version=1)
    server = start_tuned(stored, root, reload_poll_seconds=0.2, max_latency_ms=10_000)
    answered: dict[str, str] = {}  # request id -> the version that answered
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=60) as client:
            while not stop.is_set():
                try:
                    r = client.post(f"{server.url}/transcribe", files={"audio": ("q.wav", wav)})
                except httpx.TransportError:
                    continue  # the kill resets what is in flight: never acknowledged
                if r.status_code == 200:
                    answered[r.json()["request_id"]] = r.json()["model_version"]

    def reload() -> None:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        try:
            httpx.post(f"{server.url}/admin/reload", json={}, headers=headers, timeout=60)
        except httpx.TransportError:
            pass  # killed while reloading: what the test is for

    threads = [threading.Thread(target=load) for _ in range(clients)]
    try:
        for t in threads:
            t.start()
        time.sleep(2.0)
        before_switch = len(answered)
        # the new model lands in the store; the first answer from it means one worker has
        # switched and the others are loading it or about to: kill then, a reload in flight
        filling = threading.Thread(target=make_store, args=(root,), kwargs={"version": 2})
        filling.start()
        deadline = time.monotonic() + 120
        while "2" not in answered.values() and time.monotonic() < deadline:
            time.sleep(0.01)
        threading.Thread(target=reload, daemon=True).start()
        time.sleep(0.05)
        mixed = sorted(set(list(answered.values())[-clients * 4 :]))  # the last answers
        tree = process_tree(server.process)
        kill_tree(tree)
        killed_at = time.monotonic()
        stop.set()
        for t in threads:
            t.join(timeout=60)
        filling.join(timeout=120)
    finally:
        stop.set()
        stop_server(server)  # the tree is gone already; this reaps the arbiter
    acknowledged = dict(answered)
    restarted = start_tuned(stored, root, reload_poll_seconds=0.2)
    try:
        seconds_to_ready = round(time.monotonic() - killed_at, 1)
        served = httpx.get(f"{restarted.url}/metadata", timeout=10).json()["model_version"]
        after = [
            httpx.post(f"{restarted.url}/transcribe", files={"audio": ("q.wav", wav)}, timeout=60)
            for _ in range(4)
        ]
        logged = set(restarted.logged()["request_id"])
    finally:
        stop_server(restarted)
    versions_after = sorted({r.json()["model_version"] for r in after if r.status_code == 200})
    lost = sorted(set(acknowledged) - logged)
    outcome = {
        "processes_killed": len(tree),
        "acknowledged_before_kill": len(acknowledged),
        "acknowledged_before_switch": before_switch,
        "versions_before_kill": sorted(set(acknowledged.values())),
        "versions_answering_at_kill": mixed,  # ["1", "2"]: killed mid-switch
        "served_after_restart": served,
        "answers_after_restart": [r.status_code for r in after],
        "versions_after_restart": versions_after,
        "seconds_to_ready": seconds_to_ready,
        "lost": len(lost),
        "lost_examples": lost[:3],
    }
    outcome["ok"] = bool(
        served in ("1", "2")
        and versions_after == [served]  # one whole model, the one /metadata names
        and all(r.status_code == 200 for r in after)
        and acknowledged
        and not lost
    )
    return outcome
