"""The fault benchmark's harness, which the fault tests use too (tests are not a library):
a real `bentoml serve` on 127.0.0.1 in a model store of its own, its process tree, and the
load a crowd of phones puts on it (bursts of uploads, a locked prediction log).

The store is filled in a child process, so the caller's BentoML container (resolved once per
process) is never pointed at it.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import psutil
import yaml

from bench.crowd import Answer, get_request, upload_request, waves
from data_contracts.prediction_store import PredictionStore
from data_contracts.scoping import Scope
from deployments.arguments import serve_arguments, serve_command

REPO = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 90.0
ADMIN_TOKEN = "real-server-token"
MODEL_NAME = "voicecycle-asr"
METADATA: dict[str, object] = {
    "registry_version": "1",
    "dataset_version": "ds-test-0001",
    "model_name": MODEL_NAME,
    "metrics": {"wer_clean": 0.9, "cer_clean": 0.7},
}
_FILL = """
import json, sys
from pathlib import Path
import torch
from models.ctc import AcousticModelConfig, CTCAcousticModel
from models.recognizer import Recognizer
from tasks.packaging import import_recognizer
torch.manual_seed(int(sys.argv[2]))
Recognizer(CTCAcousticModel(AcousticModelConfig())).save(Path(sys.argv[1]))
if sys.argv[4] == "corrupt":  # what a torn copy or a bad disk leaves
    weights = Path(sys.argv[1]) / "weights.pt"
    weights.write_bytes(weights.read_bytes()[:1000])
metadata = {**json.loads(sys.argv[3]), "registry_version": sys.argv[2]}
print(import_recognizer(Path(sys.argv[1]), metadata["model_name"], metadata, {"stage": "faults"}))
"""


@dataclass(frozen=True)
class StoredModel:
    home: Path
    tag: str
    recognizer_dir: Path


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    workspace: Path
    log: Path
    log_url: str = ""  # the prediction log's URL; "": the default SQLite file in the workspace

    def logged(self) -> pd.DataFrame:
        url = self.log_url or f"sqlite:///{self.workspace.resolve() / 'predictions.db'}"
        store = PredictionStore(url)
        try:
            return store.read()
        finally:
            store.close()

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(home: Path) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("BENTOML_")},
        "BENTOML_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "True",
        "PYTHONPATH": str(REPO),
    }


def make_store(root: Path, version: int = 1, corrupt: bool = False) -> StoredModel:
    """A BentoML home under `root` holding a random-init recogniser as registry version
    `version` (a higher version in the same home is a new model the running service switches
    to at its next poll); `corrupt`: its weights file truncated."""
    import json

    home, recognizer = root / "bentoml-home", root / f"recognizer-{version}"
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _FILL,
            str(recognizer),
            str(version),
            json.dumps(METADATA),
            "corrupt" if corrupt else "whole",
        ],
        cwd=REPO,
        env=_env(home),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"filling the model store failed:\n{done.stderr[-3000:]}")
    return StoredModel(home, done.stdout.strip().splitlines()[-1], recognizer)


def write_scope(
    path: Path, workspace: Path, state: dict[str, object] | None = None, **serving: object
) -> Path:
    """A scope YAML rooted at `workspace`, with serving (and state) settings overridden."""
    data = Scope().with_workspace(workspace).model_dump(mode="json")
    data["serving"].update(serving)
    data["state"].update(state or {})
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def write_admin_token(workspace: Path, token: str = ADMIN_TOKEN) -> Path:
    """The admin token where the default scope's state.admin_token_file puts it."""
    path = Scope().with_workspace(workspace).state.path("admin_token_file")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(token + "\n")
    return path


def start_tuned(
    stored: StoredModel, root: Path, state: dict[str, object] | None = None, **serving: object
) -> Server:
    """`bentoml serve` on a free port with the scope's serving settings overridden (e.g. a
    small in-flight limit: `max_batch_size=2, workers=1` admits 8 requests at once), and its
    state settings (`state`: a prediction log on PostgreSQL, say)."""
    workspace = root / "workspace"
    scope = write_scope(root / "scope.yaml", workspace, state, **serving)
    write_admin_token(workspace)
    port = free_port()
    log = root / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            serve_command("127.0.0.1", port, serve_arguments(scope, workspace, None)),
            cwd=REPO,
            env=_env(stored.home),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    log_url = str((state or {}).get("prediction_log_url", ""))
    server = Server(f"http://127.0.0.1:{port}", process, workspace, log, log_url)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"bentoml serve exited {process.returncode}:\n{server.log_tail()}")
        try:
            if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    stop_server(server)
    raise RuntimeError(f"bentoml serve not ready after {READY_TIMEOUT_S:.0f} s")


def start_server(stored: StoredModel, root: Path) -> Server:
    """A wider batching budget than the default: checks that answers are logged, not how much
    a shared 2-core machine takes before it sheds load."""
    return start_tuned(stored, root, max_latency_ms=10_000)


def process_tree(process: subprocess.Popen[bytes]) -> list[psutil.Process]:
    """`bentoml serve` and its workers (circus setsid()s each worker into its own session)."""
    try:
        root = psutil.Process(process.pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def kill_tree(processes: list[psutil.Process]) -> None:
    for proc in reversed(processes):  # workers first: they hold the requests
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(processes, timeout=15)


def stop_server(server: Server) -> None:
    """SIGTERM (graceful), then SIGKILL whatever of the tree is left."""
    processes = process_tree(server.process)
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
    kill_tree([p for p in processes if alive(p)])
    server.process.wait(timeout=15)


def tree_rss(server: Server) -> int:
    total = 0
    for proc in process_tree(server.process):
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


# -- load ----------------------------------------------------------------------------------------


# Where a 503 "overloaded" came from, told by its words (deployments/admission.py and
# deployments/batcher.py): the upload gate before the body is read, or the batcher after it
# (a full queue ahead, or a clip that waited past the budget).
REFUSAL_KINDS = {
    "requests in the service": "gate",
    "clips are ahead": "batcher_queue",
    "for the recogniser, past the": "batcher_wait",
}


def refusal_kind(response: Answer | httpx.Response) -> str:
    """Which layer refused a 503 (see REFUSAL_KINDS; its code otherwise, e.g. not_ready)."""
    try:
        body = response.json()
    except ValueError:
        return "not_json"
    words = str(body.get("error", ""))
    for marker, kind in REFUSAL_KINDS.items():
        if marker in words:
            return kind
    return str(body.get("code", "unknown"))


def percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


@dataclass
class Burst:
    concurrency: int
    statuses: dict[int, int] = field(default_factory=dict)  # 0: no HTTP answer (reset)
    retry_after_missing: int = 0  # 503s without Retry-After
    admitted_ms: list[float] = field(default_factory=list)  # wall time of each 200
    refused_ms: list[float] = field(default_factory=list)  # wall time of each 503
    refused_by: dict[str, list[float]] = field(default_factory=dict)  # the 503s by kind
    answered_ids: list[str] = field(default_factory=list)
    unanswered: list[str] = field(default_factory=list)  # the transport errors, in words

    @property
    def non_503_5xx(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500 and status != 503)

    def summary(self) -> dict[str, object]:
        return {
            "concurrency": self.concurrency,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "non_503_5xx": self.non_503_5xx,
            "retry_after_missing": self.retry_after_missing,
            "admitted_p50_ms": percentile(self.admitted_ms, 50),
            "admitted_p99_ms": percentile(self.admitted_ms, 99),
            "refused_p50_ms": percentile(self.refused_ms, 50),
            "refused_p99_ms": percentile(self.refused_ms, 99),
            "refused_by": {
                kind: {"n": len(ms), "p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99)}
                for kind, ms in sorted(self.refused_by.items())
            },
            "unanswered_examples": sorted(set(self.unanswered))[:3],
        }


def burst(url: str, wav: bytes, concurrency: int, rounds: int = 1) -> Burst:
    """`rounds` waves of `concurrency` simultaneous uploads from a light crowd (bench/crowd.py:
    one event loop, raw keep-alive connections); every answer counted."""
    result = Burst(concurrency)
    for outcome in waves(url, upload_request(url, wav), concurrency, rounds):
        response, ms = outcome.answer, outcome.ms
        status = response.status_code if response is not None else 0
        result.statuses[status] = result.statuses.get(status, 0) + 1
        if response is None:
            result.unanswered.append(str(outcome.error)[:160])
            continue
        if status == 200:
            result.admitted_ms.append(ms)
            result.answered_ids.append(response.json()["request_id"])
        elif status == 503:
            result.refused_ms.append(ms)
            result.refused_by.setdefault(refusal_kind(response), []).append(ms)
            if "retry-after" not in response.headers:
                result.retry_after_missing += 1
    return result


def healthz_burst(url: str, concurrency: int) -> dict[str, float | None]:
    """The same crowd asking GET /healthz (no body, no admission, no model): what this client
    and this machine add to any answer at that concurrency, for reading the 503 times."""
    ms = [o.ms for o in waves(url, get_request(url, "/healthz"), concurrency) if o.answer]
    return {"healthz_p50_ms": percentile(ms, 50), "healthz_p99_ms": percentile(ms, 99)}


@contextmanager
def healthz_probe(url: str, every_s: float = 0.02) -> Iterator[list[float]]:
    """GET /healthz on a new connection every `every_s` while the block runs (the times, in
    ms, fill the list): how long a worker's event loop takes to accept and answer a request
    that needs nothing, during the load the block puts on it."""
    times: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        while not stop.wait(every_s):
            started = time.perf_counter()
            try:
                httpx.get(f"{url}/healthz", timeout=30, headers={"connection": "close"})
            except httpx.TransportError:
                continue
            times.append((time.perf_counter() - started) * 1000)

    thread = threading.Thread(target=probe, name="healthz-probe", daemon=True)
    thread.start()
    try:
        yield times
    finally:
        stop.set()
        thread.join(timeout=60)


# BentoML's access log line of a request: "... (status=503,...) 1.234ms", the time from its
# access-log middleware taking the request to the response's last byte being handed on.
_ACCESS = re.compile(rb"path=/transcribe[^)]*\) \(status=(\d+)[^)]*\) ([\d.]+)ms")


def server_times(log: Path, offset: int) -> dict[int, list[float]]:
    """The server-side times of /transcribe by status, from the access log after `offset`."""
    with log.open("rb") as f:
        f.seek(offset)
        text = f.read()
    times: dict[int, list[float]] = {}
    for status, ms in _ACCESS.findall(text):
        times.setdefault(int(status), []).append(float(ms))
    return times


@contextmanager
def locked_log(workspace: Path) -> Iterator[None]:
    """The prediction log held by another writer (an exclusive SQLite transaction)."""
    conn = sqlite3.connect(workspace / "predictions.db", timeout=30, isolation_level=None)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()
