"""The in-process batcher: batches under concurrency, one model thread, reload, overload."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from deployments.batcher import Batcher, Gauge
from deployments.errors import Rejected
from deployments.served_model import ServedModel


@dataclass(frozen=True)
class Said:
    text: str
    confidence: float
    duration_s: float


class FakeRecognizer:
    """Answers each clip with its first sample as text; refuses to be entered concurrently
    (as the flashlight beam decoder must not be); can be held inside a call."""

    def __init__(self, seconds_per_batch: float = 0.0) -> None:
        self.seconds_per_batch = seconds_per_batch
        self.batches: list[int] = []
        self.threads: set[int] = set()
        self.hold = threading.Event()
        self.hold.set()
        self.entered = threading.Event()
        self._busy = threading.Lock()
        self.overlaps = 0

    def transcribe(self, waves: Sequence[np.ndarray]) -> list[Said]:
        if not self._busy.acquire(blocking=False):
            self.overlaps += 1
            raise RuntimeError("entered from two threads at once")
        try:
            self.entered.set()
            self.threads.add(threading.get_ident())
            self.batches.append(len(waves))
            self.hold.wait(10)
            time.sleep(self.seconds_per_batch)
            return [Said(str(int(w[0])), 0.5, w.shape[0] / 16000) for w in waves]
        finally:
            self._busy.release()


def served(recognizer: Any, version: str = "1") -> ServedModel:
    return ServedModel(recognizer, f"asr:{version}", version, {})


def clip(i: int) -> np.ndarray:
    return np.full(1600, float(i), dtype=np.float32)


@pytest.fixture
def make_batcher() -> Iterator[Any]:
    made: list[Batcher] = []

    def make(model: Any, **kwargs: Any) -> Batcher:
        options: dict[str, Any] = {
            "max_batch_size": 8,
            "window_s": 0.05,
            "budget_s": 10.0,
            "threads": 1,
        }
        options.update(kwargs)
        batcher = Batcher(lambda: model() if callable(model) else model, **options)
        made.append(batcher)
        return batcher

    yield make
    for batcher in made:
        batcher.close()


async def _gather(batcher: Batcher, ids: Sequence[int]) -> list[Any]:
    return list(await asyncio.gather(*(batcher.recognize(clip(i)) for i in ids)))


def test_concurrent_clips_share_a_batch_and_keep_their_own_answer(make_batcher: Any) -> None:
    recognizer = FakeRecognizer()
    batcher = make_batcher(served(recognizer))

    results = asyncio.run(_gather(batcher, range(20)))

    assert [r.text for r in results] == [str(i) for i in range(20)]
    assert all(r.model_version == "1" and r.model_tag == "asr:1" for r in results)
    assert max(recognizer.batches) == 8 and sum(recognizer.batches) == 20
    stats = batcher.stats()["observed_batch_sizes"]
    assert sum(int(k) * v for k, v in stats.items()) == 20


def test_one_model_thread_never_enters_the_model_twice(make_batcher: Any) -> None:
    recognizer = FakeRecognizer(seconds_per_batch=0.002)
    batcher = make_batcher(served(recognizer), window_s=0.001)
    errors: list[BaseException] = []

    def client(k: int) -> None:
        try:
            for j in range(15):
                assert batcher.submit(clip(k * 100 + j)).result(10).text == str(k * 100 + j)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert not errors and recognizer.overlaps == 0
    assert len(recognizer.threads) == 1 and threading.get_ident() not in recognizer.threads
    assert sum(recognizer.batches) == 180 and max(recognizer.batches) > 1


def test_sequential_traffic_does_not_wait_for_the_window(make_batcher: Any) -> None:
    batcher = make_batcher(served(FakeRecognizer()), window_s=2.0)
    started = time.perf_counter()
    for i in range(5):
        assert batcher.submit(clip(i)).result(10).text == str(i)
    assert time.perf_counter() - started < 1.0


def test_a_request_being_decoded_is_waited_for(make_batcher: Any) -> None:
    incoming = [1]
    recognizer = FakeRecognizer()
    batcher = make_batcher(served(recognizer), window_s=2.0, incoming=lambda: incoming[0])
    first = batcher.submit(clip(1))
    time.sleep(0.1)
    assert not first.done()  # held: another request is on its way
    incoming[0] = 0
    second = batcher.submit(clip(2))
    assert (first.result(10).text, second.result(10).text) == ("1", "2")
    assert recognizer.batches == [2]


def test_a_batch_runs_what_is_queued_without_waiting_for_other_clients(
    make_batcher: Any,
) -> None:
    recognizer = FakeRecognizer()
    batcher = make_batcher(served(recognizer), window_s=2.0)
    recognizer.hold.clear()  # the first batch holds the model while two more clips queue
    first = batcher.submit(clip(0))
    assert recognizer.entered.wait(5)
    queued = [batcher.submit(clip(i)) for i in (1, 2)]
    started = time.perf_counter()
    recognizer.hold.set()
    assert [f.result(10).text for f in (first, *queued)] == ["0", "1", "2"]
    assert time.perf_counter() - started < 1.0  # no wait for the third client of three
    assert recognizer.batches == [1, 2]


def test_gauge_counts_who_is_inside_across_threads() -> None:
    gauge = Gauge()
    threads = [threading.Thread(target=gauge.enter) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    gauge.leave()
    assert gauge.active == 7


def test_the_batch_in_flight_keeps_its_model_across_a_reload(make_batcher: Any) -> None:
    old, new = FakeRecognizer(), FakeRecognizer()
    current = [served(old, "1")]
    batcher = make_batcher(lambda: current[0], window_s=0.0)
    old.hold.clear()
    in_flight = batcher.submit(clip(1))
    assert old.entered.wait(10)
    current[0] = served(new, "2")  # what reload() does: swap the reference
    old.hold.set()

    assert in_flight.result(10).model_version == "1"
    assert batcher.submit(clip(2)).result(10).model_version == "2"
    assert old.batches == [1] and new.batches == [1]


def test_a_deep_queue_is_refused_at_once(make_batcher: Any) -> None:
    recognizer = FakeRecognizer()
    batcher = make_batcher(served(recognizer), max_batch_size=2, window_s=0.0, budget_s=0.5)
    batcher._full_batch_s = 0.2  # as measured: a full batch takes 200 ms
    recognizer.hold.clear()
    running = batcher.submit(clip(0))
    assert recognizer.entered.wait(10)
    queued = [batcher.submit(clip(i)) for i in (1, 2)]  # 1 running + 2 queued: 2 batches
    started = time.perf_counter()
    with pytest.raises(Rejected) as refused:
        batcher.submit(clip(3))  # a third batch: 600 ms > 500 ms
    assert time.perf_counter() - started < 0.4  # not queued behind the 200 ms batches
    assert (refused.value.status, refused.value.code) == (503, "overloaded")
    recognizer.hold.set()
    assert [f.result(10).text for f in (running, *queued)] == ["0", "1", "2"]


def test_a_clip_that_waited_past_the_budget_is_not_run(make_batcher: Any) -> None:
    recognizer = FakeRecognizer()
    batcher = make_batcher(served(recognizer), max_batch_size=1, window_s=0.0, budget_s=0.2)
    recognizer.hold.clear()
    first = batcher.submit(clip(0))
    assert recognizer.entered.wait(10)
    late = batcher.submit(clip(1))
    time.sleep(0.3)
    recognizer.hold.set()
    assert first.result(10).text == "0"
    with pytest.raises(Rejected) as refused:
        late.result(10)
    assert refused.value.status == 503
    assert recognizer.batches == [1]


def test_a_cancelled_clip_is_dropped_and_a_failing_batch_fails_its_clips(
    make_batcher: Any,
) -> None:
    recognizer = FakeRecognizer()
    batcher = make_batcher(served(recognizer), max_batch_size=1, window_s=0.0)
    recognizer.hold.clear()
    first = batcher.submit(clip(0))
    assert recognizer.entered.wait(10)
    dropped = batcher.submit(clip(1))
    assert dropped.cancel()
    recognizer.hold.set()
    assert first.result(10).text == "0"
    assert batcher.submit(clip(2)).result(10).text == "2"
    assert recognizer.batches == [1, 1]

    class Broken:
        def transcribe(self, waves: Sequence[np.ndarray]) -> list[Said]:
            raise ValueError("bad weights")

    broken = make_batcher(served(Broken()))
    with pytest.raises(ValueError, match="bad weights"):
        broken.submit(clip(0)).result(10)
    with pytest.raises(ValueError, match="bad weights"):  # the model thread lives on
        broken.submit(clip(1)).result(10)


def test_no_model_answers_not_ready_and_close_drains_the_queue(make_batcher: Any) -> None:
    empty = make_batcher(None)
    with pytest.raises(Rejected) as refused:
        empty.submit(clip(0)).result(10)
    assert refused.value.code == "not_ready"

    recognizer = FakeRecognizer()
    batcher = make_batcher(served(recognizer), max_batch_size=1, window_s=0.0)
    recognizer.hold.clear()
    futures = [batcher.submit(clip(i)) for i in range(3)]
    assert recognizer.entered.wait(10)
    closer = threading.Thread(target=batcher.close)
    closer.start()
    time.sleep(0.05)
    with pytest.raises(Rejected):
        batcher.submit(clip(9))  # shutting down: no new work
    recognizer.hold.set()
    closer.join(10)
    assert [f.result(0).text for f in futures] == ["0", "1", "2"]
