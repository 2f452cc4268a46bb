"""Overload and an unavailable prediction log, driven over HTTP as phones would: what the CI
test and `bench faults` both measure (at different sizes)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np


@dataclass
class Burst:
    concurrency: int
    statuses: dict[int, int] = field(default_factory=dict)  # 0: no HTTP answer (reset)
    retry_after_missing: int = 0  # 503s without Retry-After
    admitted_ms: list[float] = field(default_factory=list)  # wall time of each 200
    refused_ms: list[float] = field(default_factory=list)  # wall time of each 503
    answered_ids: list[str] = field(default_factory=list)

    @property
    def non_503_5xx(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500 and status != 503)

    def summary(self) -> dict[str, object]:
        def p(values: list[float], q: float) -> float | None:
            return round(float(np.percentile(values, q)), 1) if values else None

        return {
            "concurrency": self.concurrency,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "non_503_5xx": self.non_503_5xx,
            "retry_after_missing": self.retry_after_missing,
            "admitted_p50_ms": p(self.admitted_ms, 50),
            "admitted_p99_ms": p(self.admitted_ms, 99),
            "refused_p99_ms": p(self.refused_ms, 99),
        }


def post(client: httpx.Client, url: str, wav: bytes) -> tuple[httpx.Response | None, float]:
    started = time.perf_counter()
    try:
        response = client.post(f"{url}/transcribe", files={"audio": ("q.wav", wav, "audio/wav")})
    except httpx.TransportError:
        return None, (time.perf_counter() - started) * 1000
    return response, (time.perf_counter() - started) * 1000


def burst(url: str, wav: bytes, concurrency: int, rounds: int = 1) -> Burst:
    """`rounds` waves of `concurrency` simultaneous uploads; every answer counted."""
    result = Burst(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with (
        httpx.Client(timeout=120, limits=limits) as client,
        ThreadPoolExecutor(concurrency) as pool,
    ):
        for _ in range(rounds):
            for response, ms in pool.map(lambda _: post(client, url, wav), range(concurrency)):
                status = response.status_code if response is not None else 0
                result.statuses[status] = result.statuses.get(status, 0) + 1
                if response is None:
                    continue
                if status == 200:
                    result.admitted_ms.append(ms)
                    result.answered_ids.append(response.json()["request_id"])
                elif status == 503:
                    result.refused_ms.append(ms)
                    if "retry-after" not in response.headers:
                        result.retry_after_missing += 1
    return result


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
