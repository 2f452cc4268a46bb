"""A real `bentoml serve` on 127.0.0.1: concurrent load, batching, and durability under SIGKILL."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd
import psutil
import pytest

from data_contracts.prediction_store import PredictionStore
from deployments.arguments import serve_arguments, serve_command
from tests.service.conftest import StoredModel, write_admin_token, write_scope

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 90.0


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    workspace: Path
    log: Path

    def logged(self) -> pd.DataFrame:
        store = PredictionStore(f"sqlite:///{self.workspace.resolve() / 'predictions.db'}")
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


def process_tree(process: subprocess.Popen[bytes]) -> list[psutil.Process]:
    """`bentoml serve` and its workers. Circus setsid()s each worker into a session of its
    own, so signalling the serve process group alone would leave the workers running."""
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


def start_server(stored_model: StoredModel, root: Path) -> Server:
    workspace = root / "workspace"
    # A wider batching budget than the default 1 s: these tests check that answers are
    # logged, not how much a shared 2-core machine can take before it sheds load.
    scope = write_scope(root / "scope.yaml", workspace, max_latency_ms=10_000)
    write_admin_token(workspace, "real-server-token")
    port = free_port()
    env = {
        **os.environ,
        "BENTOML_HOME": str(stored_model.home),
        "BENTOML_DO_NOT_TRACK": "True",
        "PYTHONPATH": str(REPO),
    }
    log = root / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            serve_command("127.0.0.1", port, serve_arguments(scope, workspace, None)),
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(f"http://127.0.0.1:{port}", process, workspace, log)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"bentoml serve exited with {process.returncode}:\n{server.log_tail()}")
        try:
            if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    stop_server(server)
    pytest.fail(f"bentoml serve not ready after {READY_TIMEOUT_S:.0f} s:\n{server.log_tail()}")


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


@pytest.fixture(scope="module")
def server(stored_model: StoredModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(stored_model, tmp_path_factory.mktemp("server"))
    try:
        yield running
    finally:
        stop_server(running)


def post_clip(client: httpx.Client, url: str, wav: bytes) -> httpx.Response:
    return client.post(
        f"{url}/transcribe",
        files={"audio": ("q.wav", wav, "audio/wav")},
        data={"client": '{"app": "load-test"}'},
    )


def test_concurrent_requests_are_all_answered_and_logged(server: Server, valid_wav: bytes) -> None:
    rounds, concurrency = 4, 32  # > 100 requests: BentoML's self-proxy session refresh point
    limits = httpx.Limits(max_connections=concurrency)
    responses = []
    with httpx.Client(timeout=60, limits=limits) as client, ThreadPoolExecutor(concurrency) as pool:
        for _ in range(rounds):
            responses += list(
                pool.map(lambda _: post_clip(client, server.url, valid_wav), range(concurrency))
            )

    failed = [(r.status_code, r.text[:200]) for r in responses if r.status_code != 200]
    assert not failed, f"{len(failed)} failed: {failed[:3]}\n{server.log_tail()}"
    ids = {r.json()["request_id"] for r in responses}
    assert len(ids) == rounds * concurrency
    logged = server.logged()
    assert ids <= set(logged["request_id"])
    assert set(logged["model_version"]) == {"1"}
    batches = httpx.get(f"{server.url}/metadata").json()["batching"]["observed_batch_sizes"]
    assert max(int(size) for size in batches) > 1, f"no batch above 1 formed: {batches}"


def test_readiness_metadata_and_admin_over_real_http(server: Server) -> None:
    assert httpx.get(f"{server.url}/healthz").status_code == 200
    meta = httpx.get(f"{server.url}/metadata").json()
    assert meta["ready"] and meta["model_version"] == "1"
    assert httpx.post(f"{server.url}/admin/reload").status_code == 403
    ok = httpx.post(
        f"{server.url}/admin/reload",
        headers={"Authorization": "Bearer real-server-token"},
        timeout=30,
    )
    assert ok.status_code == 200 and ok.json()["model_version"] == "1"


def test_every_answered_request_survives_a_sigkill(
    stored_model: StoredModel, tmp_path: Path, valid_wav: bytes
) -> None:
    server = start_server(stored_model, tmp_path)
    answered: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                try:
                    response = post_clip(client, server.url, valid_wav)
                except httpx.TransportError:
                    return  # the server is gone
                if response.status_code == 200:
                    with lock:
                        answered.append(response.json()["request_id"])

    threads = [threading.Thread(target=load) for _ in range(8)]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while len(answered) < 24 and time.monotonic() < deadline:
            time.sleep(0.05)
        tree = process_tree(server.process)
        assert len(tree) >= 2, "expected bentoml serve and at least one worker"
        kill_tree(tree)  # SIGKILL mid-load: nothing gets to flush or finish
        assert not any(alive(p) for p in tree)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
        stop_server(server)

    assert len(answered) >= 24, server.log_tail()
    logged = set(server.logged()["request_id"])
    missing = set(answered) - logged
    assert not missing, f"{len(missing)} answered requests are not in the log"


def test_build_bento_packs_the_model(stored_model: StoredModel) -> None:
    import bentoml

    from tasks.packaging import build_bento

    tag = build_bento(REPO, stored_model.tag)

    bento = bentoml.get(tag)
    declared = [str(m.tag) for m in bento.info.all_models]
    assert declared == [stored_model.tag]
    src = Path(bento.path) / "src"
    files = {p.relative_to(src).as_posix() for p in src.rglob("*.py")}
    assert {
        "deployments/service.py",
        "deployments/batcher.py",
        "deployments/admission.py",
        "data_contracts/prediction_store.py",
        "models/recognizer.py",
        "models/audio.py",
        "data_contracts/prediction_log.py",
    } <= files
    assert not any(f.startswith(("flows/", "tests/", "tasks/")) for f in files)
    # the Bento serves the model it packs: the tag is its template argument, no env var
    assert bento.info.args == {"model_tag": stored_model.tag}
    assert not any(e.name.startswith("VOICECYCLE_") for e in bento.info.envs)
