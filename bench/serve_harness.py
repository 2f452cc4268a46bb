"""The serving benchmark's harness: the server under test and the load on it.

`bentoml serve` in a scratch BentoML home on 127.0.0.1 (started with the service's template
arguments, stopped with its whole process tree), a lean closed-loop HTTP load generator, and
what the server reports about the load (batch sizes, its own latencies, CPU). bench/serve.py
runs the benchmark with these; bench/serve_profile.py samples where the server's CPU goes.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 180.0
REQUEST_TIMEOUT_S = 60.0

_IMPORT_SCRIPT = """
import json, sys
from pathlib import Path
from tasks.packaging import import_recognizer
tag = import_recognizer(Path(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3]), {"bench": "serve"})
print(tag)
"""


# -- the server ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _child_env(extra: dict[str, str], pythonpath: Sequence[Path] = ()) -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(p) for p in (*pythonpath, REPO)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    return {**env, "PYTHONPATH": os.pathsep.join(paths), "BENTOML_DO_NOT_TRACK": "True", **extra}


def import_model(recognizer_dir: Path, name: str, metadata: dict[str, Any], home: Path) -> str:
    """Import into the BentoML store at `home` (a child process: BentoML fixes its home once)."""
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_SCRIPT, str(recognizer_dir), name, json.dumps(metadata)],
        cwd=REPO,
        env=_child_env({"BENTOML_HOME": str(home)}),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        raise RuntimeError(f"importing the benchmark model failed:\n{done.stderr[-3000:]}")
    return done.stdout.strip().splitlines()[-1]


def process_tree(pid: int) -> list[Any]:
    import psutil

    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def stop_server(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL what is left of the tree. The workers are collected first: circus
    puts each in a session of its own, so signalling the serve process alone can orphan them."""
    import psutil

    tree = process_tree(process.pid)
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
    _, alive = psutil.wait_procs(tree, timeout=5)
    for proc in reversed(alive):
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=15)
    if process.poll() is None:
        process.kill()
        process.wait(timeout=15)


def start_server(
    home: Path,
    workspace: Path,
    scope_file: Path,
    tag: str,
    log: Path,
    service: str | None = None,
    pythonpath: Sequence[Path] = (),
) -> tuple[subprocess.Popen[bytes], str]:
    """`bentoml serve` on 127.0.0.1:<free port>, ready; (process, base URL)."""
    import httpx

    from deployments.arguments import SERVICE_IMPORT, serve_arguments, serve_command

    port = free_port()
    command = serve_command("127.0.0.1", port, serve_arguments(scope_file, workspace, tag))
    if service:
        command = [service if part == SERVICE_IMPORT else part for part in command]
    child_env = _child_env({"BENTOML_HOME": str(home)}, pythonpath)
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=child_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    stop_server(process)
    tail = log.read_text(errors="replace")[-3000:]
    raise RuntimeError(f"bentoml serve did not become ready (exit {process.returncode}):\n{tail}")


# -- the load ------------------------------------------------------------------------------------


def multipart_body(wav: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    head = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="client"\r\n\r\n'
        '{"app": "bench-serve"}\r\n'
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="audio"; filename="q.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()
    return (
        head + wav + f"\r\n--{boundary}--\r\n".encode(),
        f"multipart/form-data; boundary={boundary}",
    )


def run_load(
    url: str, bodies: Sequence[tuple[bytes, str]], concurrency: int, requests: int
) -> dict[str, Any]:
    """`requests` POSTs from `concurrency` threads; latencies (ms), statuses, wall time, ids.

    A lean client (stdlib `http.client`, pre-encoded bodies: about 0.5 ms of CPU per
    request, a quarter of httpx's), because it shares the cores with the server it measures.
    Each request comes on a connection of its own, as from separate phones: with
    `serving.workers` processes taking connections from one socket, a few long-lived
    connections would pin the load to whichever workers accepted them (8 keep-alive clients
    measured 134 to 197 req/s from one run to the next, depending on the split).
    """
    import http.client
    from urllib.parse import urlsplit

    target = urlsplit(url)
    lock = threading.Lock()
    next_index = iter(range(requests))
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    request_ids: list[str] = []

    def worker() -> None:
        while True:
            with lock:
                i = next(next_index, None)
            if i is None:
                return
            body, content_type = bodies[i % len(bodies)]
            started = time.perf_counter()
            payload = b""
            connection = http.client.HTTPConnection(
                target.hostname or "127.0.0.1", target.port, timeout=REQUEST_TIMEOUT_S
            )
            try:
                connection.request(
                    "POST",
                    "/transcribe",
                    body=body,
                    headers={"Content-Type": content_type, "Connection": "close"},
                )
                response = connection.getresponse()
                payload = response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                status = 599
            finally:
                connection.close()
            elapsed = (time.perf_counter() - started) * 1000.0
            with lock:
                statuses[status] += 1
                if status == 200:
                    latencies.append(elapsed)
                    request_ids.append(json.loads(payload)["request_id"])

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    return {"latencies": latencies, "statuses": statuses, "wall_s": wall, "ids": request_ids}


def worker_batching(url: str, workers: int, tries_per_worker: int = 8) -> dict[int, Any]:
    """Each worker's batching stats (GET /metadata, `batching`), by process id. A request
    reaches whichever worker accepts its connection, so ask until every worker has answered
    (or the tries run out)."""
    import httpx

    seen: dict[int, Any] = {}
    for _ in range(max(1, workers) * tries_per_worker):
        with httpx.Client(timeout=10) as client:  # a new connection: maybe another worker
            batching = client.get(f"{url}/metadata").json().get("batching", {})
        seen[int(batching.get("pid", 0))] = batching
        if len(seen) >= workers:
            break
    return seen


def batch_sizes(stats: dict[int, Any]) -> Counter[int]:
    """The batch sizes formed, summed over the workers' stats."""
    total: Counter[int] = Counter()
    for batching in stats.values():
        sizes = batching.get("observed_batch_sizes", {})
        total.update({int(k): int(v) for k, v in sizes.items()})
    return total


def model_cpu_ms(stats: dict[int, Any]) -> float:
    """CPU the workers' model threads spent in `transcribe`, summed over the workers."""
    return float(sum(float(b.get("model_cpu_ms", 0.0)) for b in stats.values()))


def server_latencies(workspace: Path, ids: set[str]) -> list[float]:
    from data_contracts.prediction_store import PredictionStore

    store = PredictionStore(f"sqlite:///{workspace.resolve() / 'predictions.db'}")
    try:
        frame = store.read()
    finally:
        store.close()
    return frame.loc[frame["request_id"].isin(ids), "latency_ms"].astype(float).tolist()


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and its children."""
    import psutil

    total = 0.0
    for proc in process_tree(pid):
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total
