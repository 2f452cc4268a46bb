"""The prediction-log writer: group commits, answers only after the commit, failures refused."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from data_contracts.prediction_store import PredictionStore
from deployments.batcher import Recognition
from deployments.errors import Rejected
from deployments.pipeline import Answer, LogWriter
from models.audio import SAMPLE_RATE


def _answer(i: int, audio_path: Path | None = None) -> Answer:
    rng = np.random.default_rng(i)
    samples = (0.1 * rng.standard_normal(SAMPLE_RATE)).astype(np.float32)  # (S,) 1 s
    result = Recognition(f"call mom {i}", 0.9, 1.0, "asr:abc", "3")
    return Answer(
        f"req-{i}", result, 12.5, samples, {"app": "t"}, audio_path is not None, audio_path
    )


def test_queued_answers_share_one_transaction_and_resolve_after_it(tmp_path: Path) -> None:
    store = PredictionStore(f"sqlite:///{tmp_path / 'log.db'}")
    calls: list[int] = []
    release = threading.Event()
    original = store.append_many

    def counted(records: Any) -> None:
        release.wait(10)  # hold the first transaction so the rest queue up behind it
        calls.append(len(records))
        original(records)

    store.append_many = counted  # type: ignore[method-assign]
    writer = LogWriter(store)
    kept = tmp_path / "audio" / "req-1.wav"
    futures = [writer.submit(_answer(i, kept if i == 1 else None)) for i in range(6)]
    assert not any(f.done() for f in futures)  # nothing answered before its commit
    release.set()
    logged = [f.result(timeout=10) for f in futures]
    writer.close()
    assert sum(calls) == 6 and len(calls) < 6  # grouped: fewer transactions than rows
    frame = store.read()
    assert sorted(frame["request_id"]) == [f"req-{i}" for i in range(6)]
    assert all(abs(entry.features.duration_s - 1.0) < 1e-9 for entry in logged)
    assert logged[0].confidence == pytest.approx(0.9)
    row = frame.set_index("request_id").loc["req-1"]
    assert row["audio_path"] == str(kept) and sf.info(kept).samplerate == SAMPLE_RATE
    store.close()


def test_a_failed_transaction_refuses_every_answer_in_it(tmp_path: Path) -> None:
    store = PredictionStore(f"sqlite:///{tmp_path / 'log.db'}")
    refused: list[int] = []

    def broken(records: Any) -> None:
        raise OSError("disk full")

    store.append_many = broken  # type: ignore[method-assign]
    writer = LogWriter(store, on_failure=refused.append)
    futures = [writer.submit(_answer(i)) for i in range(3)]
    for future in futures:
        with pytest.raises(Rejected) as caught:
            future.result(timeout=10)
        assert caught.value.status == 503 and caught.value.code == "log_unavailable"
    writer.close()
    assert sum(refused) == 3
    assert store.count() == 0
    store.close()
