"""The model's own signals on the service's `GET /metrics`, beside BentoML's request metrics.

BentoML 1.4 serves `/metrics` from prometheus_client's default registry; with several worker
processes it sets `PROMETHEUS_MULTIPROC_DIR` and merges every worker's samples through
`MultiProcessCollector`. So the objects here are plain prometheus_client metrics on the
default registry, made on first use inside the process that serves (`service_metrics()`),
never at import: prometheus_client picks its multiprocess mode when it is imported, and a
metric made twice in one process would be a duplicate registration.

Series (all prefixed `voicecycle_`):
- `requests_total{status, code}`: every /transcribe answer, `code="ok"` for a transcript,
  else the ErrorBody's code (rejections at the upload gate included);
- `latency_seconds`: the handler's latency of answered requests (as `latency_ms` says);
- `batch_size`: clips per model call;
- `confidence`: the confidence of answered requests;
- `model_info{model_tag, model_version}`: 1 for the model a worker serves, 0 once replaced
  (the largest value over live workers, so two versions show 1 while a reload spreads);
- `prediction_log_write_failures_total`: answers refused because the log write failed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

PREFIX = "voicecycle_"
LATENCY_BUCKETS_S = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)
CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


@dataclass(frozen=True)
class ServiceMetrics:
    """The prometheus_client objects of one service process, and what the service reports."""

    requests: Any  # Counter{status, code}
    latency: Any  # Histogram (seconds)
    batch_size: Any  # Histogram (clips)
    confidence: Any  # Histogram
    model_info: Any  # Gauge{model_tag, model_version}
    log_write_failures: Any  # Counter

    def answered(self, latency_ms: float, confidence: float) -> None:
        """A transcript went out."""
        self.requests.labels(status="200", code="ok").inc()
        self.latency.observe(latency_ms / 1000.0)
        self.confidence.observe(confidence)

    def refused(self, status: int, code: str) -> None:
        """An ErrorBody went out with this status and code."""
        self.requests.labels(status=str(status), code=code).inc()

    def batch(self, size: int) -> None:
        """The model ran one batch of `size` clips."""
        self.batch_size.observe(size)

    def log_write_failed(self, requests: int = 1) -> None:
        """`requests` answers were refused because their log transaction failed."""
        self.log_write_failures.inc(requests)

    def serving(self, tag: str, version: str, previous: tuple[str, str] | None) -> None:
        """This process now serves (tag, version); `previous` (tag, version) no longer."""
        if previous is not None and previous != (tag, version):
            self.model_info.labels(model_tag=previous[0], model_version=previous[1]).set(0)
        self.model_info.labels(model_tag=tag, model_version=version).set(1)


@functools.cache
def service_metrics() -> ServiceMetrics:
    """This process's metrics, registered on prometheus_client's default registry once."""
    # Imported here, not at module level: in a BentoML worker the multiprocess directory is
    # in the environment by now, and prometheus_client reads it at import.
    from prometheus_client import Counter, Gauge, Histogram

    return ServiceMetrics(
        requests=Counter(
            PREFIX + "requests",
            "Answers of POST /transcribe by HTTP status and code ('ok' or the ErrorBody code)",
            ["status", "code"],
        ),
        latency=Histogram(
            PREFIX + "latency_seconds",
            "Latency of answered transcriptions, from the parsed upload to the transcript",
            buckets=LATENCY_BUCKETS_S,
        ),
        batch_size=Histogram(
            PREFIX + "batch_size", "Clips per model call of the batcher", buckets=BATCH_BUCKETS
        ),
        confidence=Histogram(
            PREFIX + "confidence",
            "Confidence of answered transcriptions",
            buckets=CONFIDENCE_BUCKETS,
        ),
        model_info=Gauge(
            PREFIX + "model_info",
            "1 for the model version a worker serves (0 once it was replaced)",
            ["model_tag", "model_version"],
            multiprocess_mode="livemax",
        ),
        log_write_failures=Counter(
            PREFIX + "prediction_log_write_failures",
            "Answers refused with 503 because the prediction log could not be written",
        ),
    )
