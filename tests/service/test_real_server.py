"""A real `bentoml serve` on 127.0.0.1: concurrent load, batching, and durability under SIGKILL."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from bench.harness import Server, alive, kill_tree, process_tree, start_server, stop_server
from tests.service.conftest import StoredModel

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


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
    # /metadata speaks for the one worker that answers it; /metrics sums every worker's
    batches, singles = batch_counts(httpx.get(f"{server.url}/metrics").text)
    assert batches > singles, f"no batch above 1 formed in {batches} batches"


def batch_counts(exposition: str) -> tuple[float, float]:
    """(batches run, batches of one clip) over all workers, from the Prometheus exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    total = singles = 0.0
    for family in text_string_to_metric_families(exposition):
        for s in family.samples:
            if s.name == "voicecycle_batch_size_count":
                total += s.value
            elif s.name == "voicecycle_batch_size_bucket" and float(s.labels["le"]) == 1.0:
                singles += s.value
    return total, singles


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
