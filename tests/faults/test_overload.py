"""Overload and a locked prediction log against a real `bentoml serve` with a small admission
limit: refusals are 503 with Retry-After, nothing else is a 5xx, nothing answered is unlogged,
and the service recovers by itself when the log returns."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from bench.harness import Server, burst, locked_log, make_store, start_tuned, stop_server
from bench.mutations import encode

pytestmark = pytest.mark.slow

WAV = encode("WAV", "PCM_16", 16000, 1, 2.0)


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("small-server")
    # one worker admitting 4 x max_batch_size = 8 requests at once
    running = start_tuned(make_store(root), root, max_batch_size=2, workers=1)
    try:
        yield running
    finally:
        stop_server(running)


def test_overload_is_refused_with_503_and_retry_after_only(small_server: Server) -> None:
    result = burst(small_server.url, WAV, concurrency=64)
    assert set(result.statuses) <= {200, 503}, (result.statuses, small_server.log_tail())
    assert result.statuses.get(503, 0) > 0 and result.statuses.get(200, 0) > 0, result.statuses
    assert result.retry_after_missing == 0
    assert set(result.answered_ids) <= set(small_server.logged()["request_id"])


def _post(client: httpx.Client, url: str) -> httpx.Response:
    return client.post(f"{url}/transcribe", files={"audio": ("q.wav", WAV, "audio/wav")})


def test_a_locked_log_gets_503_not_an_unlogged_answer_and_recovers(small_server: Server) -> None:
    url = small_server.url
    with httpx.Client(timeout=120) as client:
        with locked_log(small_server.workspace), ThreadPoolExecutor(2) as pool:
            during = list(pool.map(lambda _: _post(client, url), range(2)))
        after = _post(client, url)
    for response in during:
        assert response.status_code == 503, response.text
        assert response.json()["code"] == "log_unavailable"
        assert response.headers["retry-after"]
    assert after.status_code == 200, after.text  # back by itself: no restart, no reload
    logged = set(small_server.logged()["request_id"])
    assert after.json()["request_id"] in logged
    assert not {r.json()["request_id"] for r in during} & logged
