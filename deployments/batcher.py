"""Adaptive batching in one service process: one model thread, one `transcribe` per batch.

A handler decodes its upload on the event loop and hands the 16 kHz samples to the batcher;
after the model, the prediction-log writer (deployments/pipeline.py) computes the audio
features and commits the rows. When the model is free, the model thread takes what is queued
(up to `max_batch_size`), waiting at most the batch window only for requests already admitted
and not yet queued (the service counts them from the upload gate on, before their bodies are
read; sequential traffic never waits). Under steady concurrent load the clients therefore split
into cohorts that alternate: one batch runs while the other cohort's answers go out and its
next requests arrive, so the model does not sit idle for a whole round trip. No HTTP hop, no
JSON or base64: the samples go through as arrays. Because one thread makes every call, the beam
decoder (flashlight state, not thread-safe) is never used concurrently. A batch reads the
served model once when it starts and keeps it: a reload swaps the reference for the next batch,
while the batch in flight finishes on the model it started with.

Overload: `submit` answers 503 at once when the queue ahead of a clip would take longer than
the budget (`serving.max_latency_ms`) to clear, estimated from recent full batches, and a
clip that has waited past the budget when its batch starts is answered 503, not run.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from deployments.errors import Rejected
from deployments.served_model import ServedModel

logger = logging.getLogger("voicecycle.service")


@dataclass(frozen=True)
class Recognition:
    text: str
    confidence: float
    duration_s: float
    model_tag: str
    model_version: str


class Gauge:
    """How many requests are inside a stage now (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.active = 0

    def enter(self) -> None:
        with self._lock:
            self.active += 1

    def leave(self) -> None:
        with self._lock:
            self.active -= 1

    def __enter__(self) -> Gauge:
        self.enter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.leave()


@dataclass(eq=False)
class _Waiting:
    samples: np.ndarray  # (S,) float32 16 kHz mono
    future: concurrent.futures.Future[Recognition]
    enqueued: float  # time.monotonic()


class Batcher:
    """Adaptive batching: `submit` queues a clip and returns a concurrent future.

    The model thread takes up to `max_batch_size` waiting clips; with fewer queued than are
    queued plus `incoming()` (requests admitted, not yet queued), it waits for them, at most
    `window_s` (see `_take`). It reads the model once per batch (`model()`), so a reload
    applies from the next batch on.
    """

    def __init__(
        self,
        model: Callable[[], ServedModel | None],
        max_batch_size: int,
        window_s: float,
        budget_s: float,
        threads: int,
        incoming: Callable[[], int] = lambda: 0,
        on_batch: Callable[[int], None] = lambda size: None,
    ) -> None:
        self.max_batch_size = max(1, max_batch_size)
        self.window_s = max(0.0, window_s)
        self.budget_s = budget_s
        self.threads = threads
        self._model = model
        self._incoming = incoming
        self._on_batch = on_batch  # told each batch's size (the service's metrics)
        self._queue: deque[_Waiting] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._running = 0  # clips in the batch being run
        self._last_end = 0.0  # time.monotonic() when the last batch was answered
        self._full_batch_s = 0.0  # moving average of the time a (nearly) full batch takes
        self._sizes: Counter[int] = Counter()
        self._model_cpu_s = 0.0  # CPU time of the model thread in `transcribe`, all batches
        self._thread = threading.Thread(target=self._run, name="asr-model", daemon=True)
        self._thread.start()

    # -- the request side ----------------------------------------------------------------

    def submit(self, samples: np.ndarray) -> concurrent.futures.Future[Recognition]:
        """Queue one clip; Rejected(503) at once if its wait would exceed the budget."""
        with self._cond:
            if self._stopping:
                raise Rejected(503, "shutting_down", "the service is shutting down; retry")
            # the batch running now (counted whole), then the queue with this clip in it
            batches = (1 if self._running else 0) + math.ceil(
                (len(self._queue) + 1) / self.max_batch_size
            )
            expected_s = batches * self._full_batch_s
            # Only with a full batch already waiting: a short queue clears soon whatever an
            # old estimate says (and a clip that does wait past the budget is refused later).
            if len(self._queue) >= self.max_batch_size and expected_s > self.budget_s:
                raise Rejected(
                    503,
                    "overloaded",
                    f"{len(self._queue) + self._running} clips are ahead of this one at the "
                    f"recogniser (about {expected_s * 1000:.0f} ms of work); retry",
                )
            waiting = _Waiting(samples, concurrent.futures.Future(), time.monotonic())
            self._queue.append(waiting)
            self._cond.notify()
        return waiting.future

    async def recognize(self, samples: np.ndarray) -> Recognition:
        """Submit and await one clip (cancelling the await drops it if not yet started)."""
        return await asyncio.wrap_future(self.submit(samples))

    def poke(self) -> None:
        """Wake the model thread: an expected request will not come (it was rejected)."""
        with self._cond:
            self._cond.notify()

    def stats(self) -> dict[str, Any]:
        with self._cond:
            return {
                "observed_batch_sizes": {str(k): v for k, v in sorted(self._sizes.items())},
                "queued": len(self._queue),
                "running": self._running,
                "full_batch_ms": round(self._full_batch_s * 1000.0, 1),
                # the model thread's own CPU (intra-op threads beyond it are not counted)
                "model_cpu_ms": round(self._model_cpu_s * 1000.0, 1),
                "pid": os.getpid(),  # which worker process these figures are of
            }

    def close(self, timeout: float = 30.0) -> None:
        """Run what is queued, then stop the model thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    # -- the model thread ----------------------------------------------------------------

    def _take(self) -> list[_Waiting] | None:
        """The next batch (None: stop): what is queued now, after waiting (at most the
        window) only for requests already being decoded."""
        with self._cond:
            while not self._queue:
                if self._stopping:
                    return None
                self._cond.wait()
            deadline = max(self._queue[0].enqueued, self._last_end) + self.window_s
            while not self._stopping:
                target = len(self._queue) + self._incoming()
                if len(self._queue) >= min(target, self.max_batch_size):
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            n = min(len(self._queue), self.max_batch_size)
            batch = [self._queue.popleft() for _ in range(n)]
            self._running = n
            return batch

    def _run(self) -> None:
        import torch

        torch.set_num_threads(self.threads)  # OpenMP settings are per thread: set them here
        while True:
            batch = self._take()
            if batch is None:
                return
            try:
                self._run_batch(batch)
            except Exception as exc:  # never leave a request waiting forever
                logger.exception("the model thread failed a batch")
                for waiting in batch:
                    if not waiting.future.done():
                        waiting.future.set_exception(exc)
            finally:
                with self._cond:
                    self._running = 0

    def _live(self, batch: list[_Waiting], now: float) -> list[_Waiting]:
        """The clips of a batch still worth running: not cancelled, not past the budget."""
        live = []
        for waiting in batch:
            if not waiting.future.set_running_or_notify_cancel():
                continue  # the client went away
            if now - waiting.enqueued > self.budget_s:
                waiting.future.set_exception(
                    Rejected(
                        503,
                        "overloaded",
                        f"waited {(now - waiting.enqueued) * 1000:.0f} ms for the recogniser, "
                        f"past the {self.budget_s * 1000:.0f} ms budget; retry",
                    )
                )
                continue
            live.append(waiting)
        return live

    def _run_batch(self, batch: list[_Waiting]) -> None:
        live = self._live(batch, time.monotonic())
        if not live:
            return
        served = self._model()  # one model for the whole batch, even if a reload swaps now
        if served is None:
            for waiting in live:
                waiting.future.set_exception(
                    Rejected(503, "not_ready", "no model is loaded yet; retry")
                )
            return
        started, cpu_started = time.perf_counter(), time.thread_time()
        results = served.recognizer.transcribe([w.samples for w in live])
        took = time.perf_counter() - started
        with self._cond:
            self._model_cpu_s += time.thread_time() - cpu_started
            self._sizes[len(live)] += 1
            if 2 * len(live) >= self.max_batch_size:  # scaled up to a full batch
                full = took * self.max_batch_size / len(live)
                old = self._full_batch_s
                self._full_batch_s = 0.8 * old + 0.2 * full if old else full
        self._on_batch(len(live))
        for waiting, result in zip(live, results, strict=True):
            waiting.future.set_result(
                Recognition(
                    text=result.text,
                    confidence=result.confidence,
                    duration_s=result.duration_s,
                    model_tag=served.tag,
                    model_version=served.version,
                )
            )
        with self._cond:
            self._last_end = time.monotonic()
