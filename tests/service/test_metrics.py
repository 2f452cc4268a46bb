"""The model's signals on /metrics: counted by the service, scraped by a real Prometheus."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from bench.harness import Server, free_port, start_server, stop_server
from deployments.errors import ErrorBody
from tests.service.conftest import StoredModel
from tests.service.test_real_server import post_clip

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS = shutil.which("prometheus")


def sample(name: str, **labels: str) -> float:
    """A sample of this process's default registry (0 when absent)."""
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def service(service_env: Path) -> Iterator[Any]:
    from deployments.service import VoiceSearchASR

    svc = VoiceSearchASR()
    yield svc
    svc.close()


def test_the_service_counts_answers_refusals_batches_and_the_version(
    service: Any, tmp_path: Path, valid_wav: bytes
) -> None:
    ok = {"status": "200", "code": "ok"}
    empty = {"status": "400", "code": "empty_upload"}
    before = {
        "ok": sample("voicecycle_requests_total", **ok),
        "empty": sample("voicecycle_requests_total", **empty),
        "latency": sample("voicecycle_latency_seconds_count"),
        "confidence": sample("voicecycle_confidence_count"),
        "batches": sample("voicecycle_batch_size_count"),
        "failures": sample("voicecycle_prediction_log_write_failures_total"),
    }
    good, bad = tmp_path / "q.wav", tmp_path / "e.wav"
    good.write_bytes(valid_wav)
    bad.write_bytes(b"")

    answer = asyncio.run(service.transcribe(audio=good))
    refusal = asyncio.run(service.transcribe(audio=bad))

    assert not isinstance(answer, ErrorBody) and isinstance(refusal, ErrorBody)
    assert sample("voicecycle_requests_total", **ok) == before["ok"] + 1
    assert sample("voicecycle_requests_total", **empty) == before["empty"] + 1
    assert sample("voicecycle_latency_seconds_count") == before["latency"] + 1
    assert sample("voicecycle_confidence_count") == before["confidence"] + 1
    assert sample("voicecycle_batch_size_count") >= before["batches"] + 1
    served = service.served
    info = {"model_tag": served.tag, "model_version": served.version}
    assert sample("voicecycle_model_info", **info) == 1.0

    def broken(records: Any) -> None:
        raise OSError("disk full")

    service.store.append_many = broken  # the log write fails: 503, counted
    failed = asyncio.run(service.transcribe(audio=good))
    assert isinstance(failed, ErrorBody) and failed.code == "log_unavailable"
    assert sample("voicecycle_prediction_log_write_failures_total") == before["failures"] + 1
    assert sample("voicecycle_requests_total", status="503", code="log_unavailable") >= 1


def test_a_replaced_version_reads_zero() -> None:
    from deployments.metrics import service_metrics

    metrics = service_metrics()
    metrics.serving("m:old", "7", None)
    metrics.serving("m:new", "8", ("m:old", "7"))
    assert sample("voicecycle_model_info", model_tag="m:old", model_version="7") == 0.0
    assert sample("voicecycle_model_info", model_tag="m:new", model_version="8") == 1.0


def test_the_repo_prometheus_config_scrapes_the_default_service() -> None:
    from data_contracts.scoping import Scope

    config = yaml.safe_load((REPO / "prometheus.yml").read_text())
    [job] = config["scrape_configs"]
    serving = Scope().serving
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == [f"{serving.host}:{serving.port}"]


# -- a real Prometheus scraping a real `bentoml serve` -------------------------------------


def start_prometheus(root: Path, target: str) -> tuple[subprocess.Popen[bytes], str, Path]:
    """Debian's prometheus on a free 127.0.0.1 port, the repo's prometheus.yml pointed at
    `target` and scraping every second, its database under `root`."""
    assert PROMETHEUS is not None
    config = yaml.safe_load((REPO / "prometheus.yml").read_text())
    config["global"]["scrape_interval"] = "1s"
    config["scrape_configs"][0]["static_configs"][0]["targets"] = [target]
    config_path = root / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config))
    port = free_port()
    log = root / "prometheus.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={root / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return process, f"http://127.0.0.1:{port}", log


def query(prometheus: str, promql: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{prometheus}/api/v1/query", params={"query": promql}, timeout=5)
    response.raise_for_status()
    return list(response.json()["data"]["result"])


def wait_for(prometheus: str, promql: str, log: Path, timeout_s: float = 60.0) -> list[Any]:
    """The first non-empty answer of a query (Prometheus scrapes every second)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            result = query(prometheus, promql)
            if result:
                return result
        except httpx.HTTPError:
            pass  # not up yet
        time.sleep(0.5)
    pytest.fail(f"no series for {promql!r} after {timeout_s:.0f} s:\n{log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def server(stored_model: StoredModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(stored_model, tmp_path_factory.mktemp("metrics-server"))
    try:
        yield running
    finally:
        stop_server(running)


@pytest.mark.slow
@pytest.mark.skipif(PROMETHEUS is None, reason="Debian's prometheus is not installed")
def test_prometheus_scrapes_the_models_signals(
    server: Server, tmp_path: Path, valid_wav: bytes
) -> None:
    with httpx.Client(timeout=60) as client:
        for _ in range(4):
            assert post_clip(client, server.url, valid_wav).status_code == 200
        refused = client.post(f"{server.url}/transcribe", files={"audio": ("e.wav", b"")})
        assert refused.status_code == 400
    exposed = httpx.get(f"{server.url}/metrics").text
    assert "voicecycle_requests_total" in exposed, exposed[-2000:]

    target = server.url.removeprefix("http://")
    process, prometheus, log = start_prometheus(tmp_path, target)
    try:
        up = wait_for(prometheus, 'up{job="voicecycle"} == 1', log)
        assert up[0]["metric"]["instance"] == target
        ok = wait_for(prometheus, 'voicecycle_requests_total{code="ok"}', log)
        assert sum(float(r["value"][1]) for r in ok) == 4
        empty = wait_for(prometheus, 'voicecycle_requests_total{code="empty_upload"}', log)
        assert empty[0]["metric"]["status"] == "400"
        info = wait_for(prometheus, "voicecycle_model_info == 1", log)
        assert {r["metric"]["model_version"] for r in info} == {"1"}
        for series in (
            "voicecycle_latency_seconds_bucket",
            "voicecycle_confidence_bucket",
            "voicecycle_batch_size_count",
            "voicecycle_prediction_log_write_failures_total",
        ):
            assert wait_for(prometheus, series, log), series
    finally:
        process.terminate()
        process.wait(timeout=15)
