"""One request's way through a service process after the model: audio features, log row.

The handler decodes its upload on the event loop (a bounded upload decodes in a fraction of a
millisecond per second of audio, cheaper than a hop to a worker thread and back), hands the
samples to the batcher and awaits the transcript; then it hands the answer to the `LogWriter`
and awaits that. The writer's one thread takes every answer queued at that moment (the
clips of one batch arrive together), computes their audio features, writes the consented
audio and commits all their rows in one transaction; only then are their futures resolved,
so a client is never answered before its row is committed. If the transaction fails, every
request in it is refused (503 `log_unavailable`): nothing acknowledged is unlogged.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from data_contracts.prediction_store import PredictionStore
from deployments.batcher import Batcher, Recognition
from deployments.errors import Rejected
from models.audio import (
    SAMPLE_RATE,
    AudioFeatures,
    DecodedAudio,
    compute_audio_features,
    decode_audio,
)

logger = logging.getLogger("voicecycle.service")

MAX_ROWS_PER_TRANSACTION = 64


@dataclass(frozen=True)
class Logged:
    """What the answer needs from a committed row."""

    confidence: float  # as logged: clipped to [0, 1]
    features: AudioFeatures


@dataclass(frozen=True)
class Answer:
    """One recognised request, waiting for its prediction-log row."""

    request_id: str
    result: Recognition
    latency_ms: float
    samples: np.ndarray  # (S,) float32 16 kHz mono
    client: dict[str, Any]
    consent: bool
    audio_path: Path | None  # where to keep the consented audio, or None


def prediction_record(
    request_id: str,
    result: Recognition,
    latency_ms: float,
    features: AudioFeatures,
    client: dict[str, Any],
    consent: bool,
    audio_path: Path | None,
) -> dict[str, Any]:
    """The prediction-log row of one answered request (data_contracts/prediction_log.py)."""
    return {
        "request_id": request_id,
        "ts": datetime.now(UTC),
        "model_version": result.model_version,
        "model_tag": result.model_tag,
        "transcript": result.text,
        "confidence": min(max(float(result.confidence), 0.0), 1.0),
        "latency_ms": latency_ms,
        **features.as_dict(),
        "n_words": len(result.text.split()),
        "client": json.dumps(client, sort_keys=True),
        "consent": consent,
        "audio_path": str(audio_path) if audio_path else None,
    }


def keep_audio(samples: np.ndarray, audio_path: Path) -> None:
    """Write consented audio as 16 kHz PCM-16 WAV."""
    audio_path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(audio_path, samples, SAMPLE_RATE, subtype="PCM_16")


def log_answers(store: PredictionStore, answers: list[Answer]) -> list[Logged]:
    """Features, consented audio files, then every row in one transaction."""
    features = [compute_audio_features(a.samples, SAMPLE_RATE) for a in answers]
    records = [
        prediction_record(
            a.request_id, a.result, a.latency_ms, f, a.client, a.consent, a.audio_path
        )
        for a, f in zip(answers, features, strict=True)
    ]
    for answer in answers:  # the files first: a row never points at audio that is not there
        if answer.audio_path is not None:
            keep_audio(answer.samples, answer.audio_path)
    store.append_many(records)
    return [Logged(r["confidence"], f) for r, f in zip(records, features, strict=True)]


class LogWriter:
    """Group commit of prediction-log rows on one thread; `submit` returns a future resolved
    once the row is committed (or failed with Rejected 503 `log_unavailable`)."""

    def __init__(
        self, store: PredictionStore, on_failure: Callable[[int], None] = lambda n: None
    ) -> None:
        self.store = store
        self._on_failure = on_failure  # told how many answers one failed transaction refused
        self._queue: deque[tuple[Answer, concurrent.futures.Future[Logged]]] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def submit(self, answer: Answer) -> concurrent.futures.Future[Logged]:
        future: concurrent.futures.Future[Logged] = concurrent.futures.Future()
        with self._cond:
            if self._stopping:
                raise Rejected(503, "shutting_down", "the service is shutting down; retry")
            self._queue.append((answer, future))
            self._cond.notify()
        return future

    def close(self, timeout: float = 30.0) -> None:
        """Commit what is queued, then stop the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _take(self) -> list[tuple[Answer, concurrent.futures.Future[Logged]]] | None:
        with self._cond:
            while not self._queue:
                if self._stopping:
                    return None
                self._cond.wait()
            n = min(len(self._queue), MAX_ROWS_PER_TRANSACTION)
            return [self._queue.popleft() for _ in range(n)]

    def _run(self) -> None:
        while (group := self._take()) is not None:
            try:
                logged = log_answers(self.store, [answer for answer, _ in group])
            except Exception:
                ids = ", ".join(answer.request_id for answer, _ in group)
                logger.exception("could not write the prediction log (requests %s)", ids)
                self._on_failure(len(group))
                for _, future in group:
                    future.set_exception(
                        Rejected(503, "log_unavailable", "the prediction log is unavailable; retry")
                    )
                continue
            for (_, future), row in zip(group, logged, strict=True):
                future.set_result(row)


def decode_upload(
    audio: Path, max_duration_s: float, batcher: Batcher
) -> tuple[DecodedAudio, concurrent.futures.Future[Recognition]]:
    """Decode the upload and queue its samples at the batcher (which may be waiting for it:
    told at once when it is not coming after all)."""
    try:
        decoded = decode_audio(audio.read_bytes(), max_duration_s)
    except BaseException:
        batcher.poke()
        raise
    return decoded, batcher.submit(decoded.samples)
