"""The voice-search speech recogniser as a BentoML 1.4 service.

`POST /transcribe` takes an audio upload (WAV/FLAC/OGG, any rate and channel count), checks it,
converts it to 16 kHz mono, transcribes it through the in-process batcher, writes a row to the
prediction log and only then answers. `GET /healthz`, `GET /readyz` (model loaded),
`GET /metadata` (model lineage, targets, serving settings, batch sizes formed),
`POST /admin/reload`.

How batching works. One model thread (`Batcher`) owns every model call. A handler, in one
worker-thread hop, decodes and checks its upload, hands the 16 kHz samples to the batcher and
computes the log's audio features while the model runs; then it awaits a future. When the
model is free, the model thread takes what is queued (up to `serving.max_batch_size`),
waiting at most `DEFAULT_BATCH_WINDOW_MS` only for requests already being decoded
(sequential traffic never waits). Under steady concurrent load the clients therefore split
into cohorts that alternate: one batch runs while the other cohort's answers go out and its
next requests arrive, so the model does not sit idle for a whole round trip. It runs one
`Recognizer.transcribe` over the batch and resolves each future. No HTTP hop, no JSON or
base64: the samples go through as arrays. Because one thread makes every call, the beam
decoder (flashlight state, not thread-safe) is never used concurrently. A batch reads the
served model once when it starts and keeps it: a reload swaps the reference for the next
batch, while the batch in flight finishes on the model it started with.

Overload. Past `MAX_IN_FLIGHT` requests in the handler, a request is answered 503 at once
(before decoding). The batcher also answers 503 at once when the queue ahead of a clip would
take longer than `serving.max_latency_ms` (the budget) to clear, estimated from recent full
batches, and answers 503 for a clip that has waited past the budget when its batch starts.

Processes and cores. `serving.workers` processes (default: one per core) each run this
class: their own model, batcher, event loop and connection to the prediction log (SQLite in
WAL mode takes writers from several processes). One process is held to about one core by
Python's GIL (the event loop, decoding and the log writes contend with the model thread's
Python), so on two cores two workers served 1.7x the requests of one (bench/serve.py). Each
model thread runs torch with `VOICECYCLE_TORCH_THREADS` intra-op threads (default:
`default_torch_threads()`). A process picks up a new champion at its next poll
(`serving.reload_poll_seconds`); `POST /admin/reload` reloads the process that answers it
at once, the others at their next poll. Every response names the version that served it.

What is fixed at import. The traffic limits and middlewares are read when the class is
decorated, so this module reads the `serving` and `audio` blocks of the scope
(`VOICECYCLE_SCOPE`) once at import. Everything else (the workspace, the prediction store, the
model, the batcher) is set up when the service is instantiated.

Environment (set by `voicecycle serve`):
  VOICECYCLE_SCOPE          path to scope.yaml (default: the defaults of `Scope()`)
  VOICECYCLE_WORKSPACE      overrides `state.workspace`
  VOICECYCLE_MODEL_TAG      BentoML model tag to serve (default "<registry.model_name>:latest")
  VOICECYCLE_ADMIN_TOKEN    bearer token for `POST /admin/reload`; unset: reload answers 403
  VOICECYCLE_TORCH_THREADS  torch intra-op threads of the model thread (tuning; see above)
  VOICECYCLE_BATCH_WINDOW_MS  how long a batch may wait for more clips (tuning; default 20)
  VOICECYCLE_BATCH_FILL     "queued" (default, above) or "clients": wait for as many clips as
                            there were requests at once (one batch per round trip; for A/B)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import io
import json
import logging
import math
import os
import secrets
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import anyio.to_thread
import bentoml
import numpy as np
import soundfile as sf
from bentoml.exceptions import NotFound
from pydantic import BaseModel, BeforeValidator
from scipy.signal import firwin, resample_poly
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from data_contracts.scoping import Scope, load_scope
from deployments.prediction_log import PredictionStore
from tasks.audio_features import compute_audio_features

if TYPE_CHECKING:
    from models.recognizer import Recognizer

logger = logging.getLogger("voicecycle.service")

SAMPLE_RATE = 16000  # models.features.SAMPLE_RATE; not imported: that module pulls in torch
MIN_INPUT_RATE = 4000
MAX_INPUT_RATE = 192000
MAX_CHANNELS = 32
MIN_DURATION_MS = 25.0  # one analysis window of the log-mel front end
MAX_RESAMPLE_DENOMINATOR = 1000  # odd rates (e.g. 191999 Hz) resample at a ratio within 1e-6
MAX_CLIENT_CHARS = 4096
MAX_SCENARIO_CHARS = 128
MAX_REFERENCE_CHARS = 2000
MULTIPART_SLACK_BYTES = 64 * 1024  # boundaries and the small form fields around the audio
TRAFFIC_TIMEOUT_S = 30  # a backstop (504); overload is answered sooner with 503
PURGE_EVERY_S = 3600.0
AUDIO_DIR_NAME = "prediction_audio"
UNKNOWN_WAV_SIZE = 0x7FFF0000  # placeholders written by streaming WAV writers (sox, ffmpeg)


def service_scope() -> Scope:
    """The scope named by VOICECYCLE_SCOPE (defaults otherwise), rooted at VOICECYCLE_WORKSPACE."""
    path = os.environ.get("VOICECYCLE_SCOPE")
    scope = load_scope(Path(path)) if path else Scope()
    workspace = os.environ.get("VOICECYCLE_WORKSPACE")
    return scope.with_workspace(Path(workspace)) if workspace else scope


def served_model_tag(scope: Scope) -> str:
    """VOICECYCLE_MODEL_TAG, else the latest version of the scope's registered model name."""
    return os.environ.get("VOICECYCLE_MODEL_TAG") or f"{scope.registry.model_name}:latest"


# Read at import because BentoML takes these at decoration time (see the module docstring).
_SCOPE_AT_IMPORT = service_scope()
MODEL_TAG = served_model_tag(_SCOPE_AT_IMPORT)
MAX_BATCH_SIZE = _SCOPE_AT_IMPORT.serving.max_batch_size
MAX_LATENCY_MS = _SCOPE_AT_IMPORT.serving.max_latency_ms
MAX_UPLOAD_BYTES = _SCOPE_AT_IMPORT.audio.max_upload_bytes


def _cores() -> int:
    """The cores this process may use."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


WORKERS = _SCOPE_AT_IMPORT.serving.workers or _cores()
# Requests past this many in the service get 503 at once (UploadGate, before the upload is
# read; the handler checks again) instead of queueing behind the batcher. BentoML's own limit
# (`traffic.max_concurrency`, 429) is left unset: overload is answered 503.
MAX_IN_FLIGHT = 4 * max(2, MAX_BATCH_SIZE)
# How long a batch may wait for requests already being decoded (see Batcher._take).
# Sequential traffic never waits; capped at a quarter of the budget.
DEFAULT_BATCH_WINDOW_MS = 20.0
BATCH_FILLS = ("queued", "clients")


# -- request and response types ---------------------------------------------------------------


def _as_text(value: Any) -> Any:
    """Undo BentoML's JSON-decoding of multipart form fields: '{"a": 1}' arrives as a dict."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict | list | bool | int | float):
        return json.dumps(value, sort_keys=True)
    return value


FormText = Annotated[str, BeforeValidator(_as_text)]
OptionalFormText = Annotated[str | None, BeforeValidator(_as_text)]


class Transcript(BaseModel):
    transcript: str
    confidence: float
    duration_s: float
    model_version: str
    request_id: str
    latency_ms: float


@dataclass(frozen=True)
class Recognition:
    text: str
    confidence: float
    duration_s: float
    model_tag: str
    model_version: str


class Rejected(Exception):
    """A request answered with a 4xx/503 and a JSON body naming the problem."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _rejection(exc: Rejected, request_id: str) -> JSONResponse:
    # Returned, not raised: BentoML 1.4 turns a raised 4xx into a one-element JSON *list*
    # and a raised 5xx into a generic message, and logs a traceback for each.
    headers = {"Retry-After": "1"} if exc.status == 503 else None
    return JSONResponse(
        {"error": exc.message, "code": exc.code, "request_id": request_id},
        status_code=exc.status,
        headers=headers,
    )


# -- audio checks ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DecodedAudio:
    samples: np.ndarray  # (S,) float32 16 kHz mono
    source_rate: int
    channels: int


def _wav_truncation(data: bytes) -> str | None:
    """For a RIFF/WAVE upload, why it is truncated (None if complete or not a WAV).

    libsndfile silently returns the frames present when a WAV is cut short; a cut-off
    upload must not be transcribed as if it were the whole query.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    pos = 12
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        if chunk == b"data":
            if size == 0 or size >= UNKNOWN_WAV_SIZE:  # streaming writers leave it unknown
                return None
            have = len(data) - (pos + 8)
            if have < size:
                return f"truncated WAV: the header declares {size} bytes of samples, {have} arrived"
            return None
        pos += 8 + size + (size & 1)
    return None


def _reason(exc: Exception) -> str:
    """libsndfile's own words, without the in-memory file object's repr."""
    return str(getattr(exc, "error_string", None) or exc)


def decode_audio(
    data: bytes, max_duration_s: float, min_duration_ms: float = MIN_DURATION_MS
) -> DecodedAudio:
    """Upload bytes -> checked 16 kHz mono float32 samples; raises Rejected naming the problem."""
    if not data:
        raise Rejected(400, "empty_upload", "the audio upload is empty (0 bytes)")
    truncated = _wav_truncation(data)
    if truncated:
        raise Rejected(415, "undecodable_audio", truncated)
    try:
        info = sf.info(io.BytesIO(data))
    except (sf.SoundFileError, RuntimeError, ValueError) as exc:
        raise Rejected(
            415, "undecodable_audio", f"not decodable as WAV, FLAC or OGG audio: {_reason(exc)}"
        ) from None
    rate = int(info.samplerate)
    if not MIN_INPUT_RATE <= rate <= MAX_INPUT_RATE:
        raise Rejected(
            400,
            "bad_sample_rate",
            f"sample rate {rate} Hz is outside the accepted {MIN_INPUT_RATE}-{MAX_INPUT_RATE} Hz",
        )
    if not 1 <= info.channels <= MAX_CHANNELS:
        raise Rejected(
            400, "bad_channels", f"{info.channels} channels; expected 1 to {MAX_CHANNELS}"
        )
    if info.frames > 0 and info.frames / rate > max_duration_s:
        raise Rejected(
            413,
            "audio_too_long",
            f"audio lasts {info.frames / rate:.2f} s; the limit is {max_duration_s:g} s",
        )
    try:
        audio, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)  # (S, C)
    except (sf.SoundFileError, RuntimeError, ValueError) as exc:
        raise Rejected(
            415, "undecodable_audio", f"the audio is corrupt or truncated: {_reason(exc)}"
        ) from None
    duration_s = audio.shape[0] / rate
    if duration_s > max_duration_s:
        raise Rejected(
            413,
            "audio_too_long",
            f"audio lasts {duration_s:.2f} s; the limit is {max_duration_s:g} s",
        )
    if duration_s * 1000 < min_duration_ms:
        raise Rejected(
            400,
            "audio_too_short",
            f"audio lasts {duration_s * 1000:.1f} ms; at least {min_duration_ms:g} ms is needed",
        )
    if not np.isfinite(audio).all():
        raise Rejected(400, "non_finite_samples", "the audio contains NaN or infinite samples")
    mono = audio[:, 0] if audio.shape[1] == 1 else audio.mean(axis=1)  # (S,)
    if rate != SAMPLE_RATE:
        ratio = Fraction(SAMPLE_RATE, rate).limit_denominator(MAX_RESAMPLE_DENOMINATOR)
        up, down = ratio.numerator, ratio.denominator
        mono = resample_poly(mono, up, down, window=_antialias_filter(up, down))
    return DecodedAudio(np.ascontiguousarray(mono, dtype=np.float32), rate, audio.shape[1])


@functools.lru_cache(maxsize=64)
def _antialias_filter(up: int, down: int) -> np.ndarray:
    """The FIR filter `resample_poly` designs by default (Kaiser, beta 5), designed once per
    ratio instead of on every request; resample_poly copies it before scaling."""
    max_rate = max(up, down)
    return firwin(2 * 10 * max_rate + 1, 1.0 / max_rate, window=("kaiser", 5.0))


def parse_client(client: str) -> dict[str, Any]:
    """The client metadata JSON object; raises Rejected(400) otherwise."""
    if len(client) > MAX_CLIENT_CHARS:
        raise Rejected(
            400, "bad_client_json", f"client metadata is over {MAX_CLIENT_CHARS} characters"
        )
    try:
        parsed = json.loads(client)
    except json.JSONDecodeError as exc:
        raise Rejected(400, "bad_client_json", f"client is not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise Rejected(
            400,
            "bad_client_json",
            f"client must be a JSON object, got a JSON {type(parsed).__name__}",
        )
    return parsed


def _check_length(name: str, value: str | None, limit: int) -> None:
    if value is not None and len(value) > limit:
        raise Rejected(400, f"bad_{name}", f"{name} is over {limit} characters")


# -- the served model ------------------------------------------------------------------------


@dataclass(frozen=True)
class ServedModel:
    recognizer: Recognizer
    tag: str  # the BentoML tag, e.g. voicecycle-asr:3kz...
    version: str  # the registry version from the metadata (the tag's version if absent)
    metadata: dict[str, Any]
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))


def torch_threads() -> int:
    """The intra-op thread count for the model thread: VOICECYCLE_TORCH_THREADS, else the
    default below."""
    configured = os.environ.get("VOICECYCLE_TORCH_THREADS", "").strip()
    if configured:
        return max(1, int(configured))
    return default_torch_threads()


def default_torch_threads() -> int:
    """The cores left after one per worker process's event loop, shared by the workers (at
    least one thread each).

    On two shared cores, two torch threads make a batch faster only while nothing else runs:
    OpenMP's threads wait for each other at every step of the GRU, so when the event loop or
    another job takes one core, a batch of 8 took 7x longer (13 vs 88 clips/s in
    bench/serve.py's raw measurement, a training job running beside it).
    """
    return max(1, (_cores() - 1) // WORKERS)


def load_served_model(tag: str) -> ServedModel:
    """Resolve `tag` in the local BentoML store and load the Recognizer in it."""
    from models.recognizer import Recognizer  # torch: imported only when a model is loaded

    stored = bentoml.models.get(tag)  # local store only; raises NotFound
    metadata = dict(stored.info.metadata)
    recognizer = Recognizer.load(Path(stored.path))
    # One pass so the first real request does not pay for lazy initialisation.
    recognizer.transcribe([np.full(SAMPLE_RATE // 2, 1e-3, dtype=np.float32)])
    version = str(metadata.get("registry_version") or stored.tag.version)
    return ServedModel(recognizer, str(stored.tag), version, metadata)


# -- the batcher ------------------------------------------------------------------------------


class Gauge:
    """How many requests are inside a stage now, and the most since the last `take_peak`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.active = 0
        self._peak = 0

    def enter(self) -> None:
        with self._lock:
            self.active += 1
            self._peak = max(self._peak, self.active)

    def leave(self) -> None:
        with self._lock:
            self.active -= 1

    def take_peak(self) -> int:
        with self._lock:
            peak, self._peak = self._peak, self.active
            return peak


# /transcribe requests anywhere in this process's HTTP stack (upload parsing included); fed
# by the UploadGate middleware, read by the batcher as the traffic's concurrency.
TRANSCRIBE_REQUESTS = Gauge()


@dataclass(eq=False)
class _Waiting:
    samples: np.ndarray  # (S,) float32 16 kHz mono
    future: concurrent.futures.Future[Recognition]
    enqueued: float  # time.monotonic()


class Batcher:
    """Adaptive batching in this process: one model thread, one `transcribe` call per batch.

    `submit` queues a clip and returns a concurrent future (await it with `recognize`). The
    model thread takes up to `max_batch_size` waiting clips. With fewer than are queued plus
    `incoming()` (requests being decoded now), or with fill "clients" fewer than the
    traffic's concurrency (`concurrency()`: the most requests in the service at once since
    the last batch started), it waits for more, at most `window_s` (see `_take`). It reads
    the model once per batch
    (`model()`), so a reload applies from the next batch on.
    Overload: `submit` refuses (Rejected 503) when the queue ahead would take longer than
    `budget_s` to clear, and a clip that waited past `budget_s` is answered 503, not run.
    """

    def __init__(
        self,
        model: Callable[[], ServedModel | None],
        max_batch_size: int,
        window_s: float,
        budget_s: float,
        threads: int,
        incoming: Callable[[], int] = lambda: 0,
        concurrency: Callable[[], int] = lambda: 0,
        fill: str = "queued",
    ) -> None:
        if fill not in BATCH_FILLS:
            raise ValueError(f"batch fill {fill!r}: expected one of {BATCH_FILLS}")
        self.fill = fill
        self.max_batch_size = max(1, max_batch_size)
        self.window_s = max(0.0, window_s)
        self.budget_s = budget_s
        self.threads = threads
        self._model = model
        self._incoming = incoming
        self._concurrency = concurrency
        self._queue: deque[_Waiting] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._running = 0  # clips in the batch being run
        self._last_end = 0.0  # time.monotonic() when the last batch was answered
        self._full_batch_s = 0.0  # moving average of the time a (nearly) full batch takes
        self._sizes: Counter[int] = Counter()
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
        """The next batch (None: stop)."""
        with self._cond:
            while not self._queue:
                if self._stopping:
                    return None
                self._cond.wait()
            # "queued" (default): take what is queued now, waiting (at most the window) only
            # for requests already being decoded. Under closed-loop load the clients then
            # split into cohorts that alternate: one batch runs while the other cohort's
            # answers go out and its next requests come in, so the model never waits for a
            # whole round trip. "clients": wait for as many clips as there were requests in
            # the service at once (one big batch per round trip; kept for A/B measurement).
            deadline = max(self._queue[0].enqueued, self._last_end) + self.window_s
            concurrency = self._concurrency() if self.fill == "clients" else 0
            while not self._stopping:
                target = max(concurrency, len(self._queue) + self._incoming())
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

    def _run_batch(self, batch: list[_Waiting]) -> None:
        now = time.monotonic()
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
        if not live:
            return
        served = self._model()  # one model for the whole batch, even if a reload swaps now
        if served is None:
            for waiting in live:
                waiting.future.set_exception(
                    Rejected(503, "not_ready", "no model is loaded yet; retry")
                )
            return
        started = time.perf_counter()
        results = served.recognizer.transcribe([w.samples for w in live])
        took = time.perf_counter() - started
        with self._cond:
            self._sizes[len(live)] += 1
            if 2 * len(live) >= self.max_batch_size:  # scaled up to a full batch
                full = took * self.max_batch_size / len(live)
                old = self._full_batch_s
                self._full_batch_s = 0.8 * old + 0.2 * full if old else full
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


# -- the HTTP pieces BentoML's API methods cannot express --------------------------------------


class UploadGate:
    """Before a /transcribe body is read: 503 when `max_active` requests are already inside
    (overload is answered in about a millisecond, not after parsing an upload behind the
    others), 413 when it is larger than the upload limit allows. Counts the requests inside
    (`gauge`), which the batcher reads as the traffic's concurrency."""

    def __init__(
        self,
        app: Any,
        max_bytes: int,
        paths: tuple[str, ...],
        gauge: Gauge | None = None,
        max_active: int | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.paths = paths
        self.gauge = gauge
        self.max_active = max_active

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        if self.gauge is None:
            await self._limited(scope, receive, send)
            return
        if self.max_active is not None and self.gauge.active >= self.max_active:
            response = _rejection(
                Rejected(
                    503, "overloaded", f"over {self.max_active} requests in the service; retry"
                ),
                uuid.uuid4().hex,
            )
            await response(scope, receive, send)
            return
        gauge = self.gauge
        gauge.enter()
        inside = True

        async def send_and_count(message: dict[str, Any]) -> None:
            nonlocal inside
            if inside and message["type"] == "http.response.start":
                inside = False  # out before the client can see the answer and send again
                gauge.leave()
            await send(message)

        try:
            await self._limited(scope, receive, send_and_count)
        finally:
            if inside:
                gauge.leave()

    async def _limited(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(scope, receive, send, int(declared))
            return
        if declared is not None:
            await self.app(scope, receive, send)
            return
        # No Content-Length (chunked): read up to the limit, then replay what was read.
        messages, total = [], 0
        while True:
            message = await receive()
            messages.append(message)
            total += len(message.get("body", b""))
            if total > self.max_bytes:
                await self._reject(scope, receive, send, total)
                return
            if message["type"] != "http.request" or not message.get("more_body", False):
                break

        async def replay() -> dict[str, Any]:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _reject(self, scope: dict[str, Any], receive: Any, send: Any, size: int) -> None:
        response = JSONResponse(
            {
                "error": f"upload of {size} bytes or more exceeds the limit of "
                f"{self.max_bytes - MULTIPART_SLACK_BYTES} bytes of audio",
                "code": "upload_too_large",
            },
            status_code=413,
        )
        await response(scope, receive, send)


async def _metadata_endpoint(_: Request) -> JSONResponse:
    service = bentoml.get_current_service()
    return JSONResponse(service.metadata())


metadata_app = Starlette(routes=[Route("/metadata", _metadata_endpoint, methods=["GET"])])


# -- the service -----------------------------------------------------------------------------


@bentoml.service(
    name="VoiceSearchASR",
    workers=WORKERS,  # processes: each its own model, batcher and event loop (see the top)
    threads=1,  # the APIs are async; the model runs on the batcher's own thread
    traffic={"timeout": TRAFFIC_TIMEOUT_S},
    resources={"cpu": "2"},
    labels={"project": "voicecycle", "task": "speech-recognition"},
)
@bentoml.asgi_app(metadata_app, path="/", name="metadata")
class VoiceSearchASR:
    """Transcribe short voice-search queries; every answer is logged before it is sent."""

    # Declared so that `bentoml build` packs the model into the Bento. Never read through the
    # descriptor: it caches its first resolution for the life of the class (which would pin
    # the first model and defeat reloads) and falls back to a BentoCloud pull when the model
    # is missing. Constructing it only parses the tag, so importing this module with an empty
    # store is fine; `bentoml serve` resolves it before start-up and refuses to start without
    # the model, while a directly instantiated service starts unready (readyz 503).
    asr_model = bentoml.models.BentoModel(MODEL_TAG)

    def __init__(self) -> None:
        self.scope = service_scope()
        self.model_tag = served_model_tag(self.scope)
        self.admin_token = os.environ.get("VOICECYCLE_ADMIN_TOKEN") or None
        self.audio_dir = self.scope.state.workspace.resolve() / AUDIO_DIR_NAME
        self.store = PredictionStore(self.scope.state.url("prediction_log_url"))
        self._served: ServedModel | None = None
        self._reload_lock = threading.Lock()
        self._failed_tag: str | None = None  # a model that did not load is not retried by polls
        self._in_flight = 0
        self._preparing = Gauge()  # admitted requests not yet handed to the batcher
        self._transcribing = Gauge()  # requests in the handler (direct calls included)
        self._stop = threading.Event()
        self.torch_threads = torch_threads()
        window_ms = os.environ.get("VOICECYCLE_BATCH_WINDOW_MS", "").strip()
        self.batch_window_ms = min(
            float(window_ms) if window_ms else DEFAULT_BATCH_WINDOW_MS, MAX_LATENCY_MS / 4
        )
        import torch

        torch.set_num_threads(self.torch_threads)  # also for model loads in other threads
        self.purge_audio()
        self.reload()
        self.batcher = Batcher(
            lambda: self._served,
            MAX_BATCH_SIZE,
            self.batch_window_ms / 1000.0,
            MAX_LATENCY_MS / 1000.0,
            self.torch_threads,
            incoming=lambda: self._preparing.active,
            concurrency=lambda: max(
                TRANSCRIBE_REQUESTS.take_peak(), self._transcribing.take_peak()
            ),
            fill=os.environ.get("VOICECYCLE_BATCH_FILL", "").strip() or "queued",
        )
        self._poller = threading.Thread(target=self._poll, name="model-poller", daemon=True)
        self._poller.start()

    # -- lifecycle ---------------------------------------------------------------------------

    def reload(self, retry_failed: bool = False) -> bool:
        """Load the model the tag resolves to now, if it differs; swap it in. True if swapped.

        The new recogniser is loaded completely before the reference is replaced, so requests
        in flight finish on the model they started with. A model that fails to load is logged
        and skipped by later polls (the current one keeps serving) unless `retry_failed`.
        """
        with self._reload_lock:
            try:
                resolved = str(bentoml.models.get(self.model_tag).tag)
            except NotFound:
                if self._served is None:
                    logger.warning("no model %s in the BentoML store yet", self.model_tag)
                return False
            current = self._served
            if current is not None and current.tag == resolved:
                return False
            if resolved == self._failed_tag and not retry_failed:
                return False
            try:
                served = load_served_model(resolved)
            except Exception:
                self._failed_tag = resolved
                raise
            self._failed_tag = None
            self._served = served
        logger.info(
            "serving %s (version %s)%s",
            served.tag,
            served.version,
            f", replacing {current.tag}" if current else "",
        )
        return True

    def purge_audio(self) -> int:
        """Delete consented audio past the retention period."""
        removed = self.store.purge_audio(self.scope.serving.audio_retention_days, self.audio_dir)
        if removed:
            logger.info("purged %d stored audio files past retention", removed)
        return removed

    def _poll(self) -> None:
        last_purge = time.monotonic()
        while not self._stop.wait(self.scope.serving.reload_poll_seconds):
            try:
                self.reload()
                if time.monotonic() - last_purge >= PURGE_EVERY_S:
                    self.purge_audio()
                    last_purge = time.monotonic()
            except Exception:  # the poller must outlive a bad model or a busy database
                logger.exception("model poll or audio purge failed")

    @bentoml.on_shutdown
    def close(self) -> None:
        """Stop the poller, run what is queued for the model, release the prediction store."""
        self._stop.set()
        if self._poller.is_alive() and self._poller is not threading.current_thread():
            self._poller.join(timeout=5)
        self.batcher.close()
        self.store.close()

    def __is_ready__(self) -> bool:
        return self._served is not None

    @property
    def served(self) -> ServedModel | None:
        return self._served

    def metadata(self) -> dict[str, Any]:
        """Model lineage, the scope's targets and the serving settings."""
        served = self._served
        meta = served.metadata if served else {}
        return {
            "service": "VoiceSearchASR",
            "ready": served is not None,
            "model_tag": served.tag if served else None,
            "model_version": served.version if served else None,
            "model_name": meta.get("model_name"),
            "dataset_version": meta.get("dataset_version"),
            "metrics": meta.get("metrics", {}),
            "loaded_at": served.loaded_at.isoformat() if served else None,
            "requested_tag": self.model_tag,
            "targets": self.scope.targets.model_dump(mode="json"),
            "serving": self.scope.serving.model_dump(mode="json"),
            "audio": self.scope.audio.model_dump(mode="json"),
            "batching": {
                "max_batch_size": MAX_BATCH_SIZE,
                "max_latency_ms": MAX_LATENCY_MS,
                "batch_window_ms": self.batch_window_ms,
                **self.batcher.stats(),
            },
            "limits": {"max_in_flight": MAX_IN_FLIGHT, "timeout_s": TRAFFIC_TIMEOUT_S},
            "torch_threads": self.torch_threads,
            "workers": WORKERS,
        }

    # -- public API ----------------------------------------------------------------------------

    @bentoml.api
    async def transcribe(
        self,
        audio: Path,
        consent: bool = False,
        client: FormText = "{}",
        scenario: OptionalFormText = None,
        reference: OptionalFormText = None,
    ) -> Transcript:
        """Transcribe one voice query (WAV/FLAC/OGG upload, any sample rate and channels).

        `client` is a JSON object of client metadata (app version, device, ...). With
        `consent`, the audio is kept (16 kHz WAV) for the retention period. `scenario` and
        `reference` (the true transcript) are for simulated or labelled traffic.
        `latency_ms` runs from the handler's start (the upload already parsed) to the
        transcript, before the log write. Errors come back as JSON `{error, code, request_id}`
        with a 4xx (or 503) status; BentoML passes a returned Response through as is.
        """
        request_id = uuid.uuid4().hex
        if self._in_flight >= MAX_IN_FLIGHT:
            return _rejection(  # type: ignore[return-value]
                Rejected(503, "overloaded", f"over {MAX_IN_FLIGHT} requests in flight; retry"),
                request_id,
            )
        self._in_flight += 1
        self._transcribing.enter()
        try:
            return await self._transcribe(request_id, audio, consent, client, scenario, reference)
        except Rejected as exc:
            logger.info("request %s rejected (%d %s): %s", request_id, exc.status, exc.code, exc)
            return _rejection(exc, request_id)  # type: ignore[return-value]
        finally:
            self._in_flight -= 1
            self._transcribing.leave()

    async def _transcribe(
        self,
        request_id: str,
        audio: Path,
        consent: bool,
        client: str,
        scenario: str | None,
        reference: str | None,
    ) -> Transcript:
        started = time.perf_counter()
        if self._served is None:
            raise Rejected(503, "not_ready", "no model is loaded yet; retry")
        client_meta = parse_client(client)
        _check_length("scenario", scenario, MAX_SCENARIO_CHARS)
        _check_length("reference", reference, MAX_REFERENCE_CHARS)
        size = audio.stat().st_size
        if size > MAX_UPLOAD_BYTES:
            raise Rejected(
                413,
                "upload_too_large",
                f"upload of {size} bytes exceeds the limit of {MAX_UPLOAD_BYTES} bytes",
            )
        max_duration_s = self.scope.audio.max_duration_s
        self._preparing.enter()  # the batcher may wait for this one

        def prepare() -> tuple[DecodedAudio, concurrent.futures.Future[Recognition], Any]:
            """Decode, hand the samples to the batcher, then compute the log's audio features
            while the model runs (one worker-thread hop for all three)."""
            try:
                decoded = decode_audio(audio.read_bytes(), max_duration_s)
            except BaseException:
                self._preparing.leave()
                self.batcher.poke()  # not coming after all
                raise
            self._preparing.leave()
            pending = self.batcher.submit(decoded.samples)
            try:
                return decoded, pending, compute_audio_features(decoded.samples, SAMPLE_RATE)
            except BaseException:
                pending.cancel()
                raise

        decoded, pending, audio_features = await anyio.to_thread.run_sync(prepare)
        features = audio_features.as_dict()
        try:
            result = await asyncio.wrap_future(pending)
        except BaseException:
            pending.cancel()  # dropped from its batch if that has not started
            raise
        latency_ms = (time.perf_counter() - started) * 1000.0
        keep_audio = consent and self.scope.serving.store_audio_with_consent
        confidence = min(max(float(result.confidence), 0.0), 1.0)
        audio_path = self.audio_dir / f"{request_id}.wav"
        record = {
            "request_id": request_id,
            "ts": datetime.now(UTC),
            "model_version": result.model_version,
            "model_tag": result.model_tag,
            "transcript": result.text,
            "confidence": confidence,
            "latency_ms": latency_ms,
            **features,
            "n_words": len(result.text.split()),
            "client": json.dumps(client_meta, sort_keys=True),
            "consent": consent,
            "audio_path": str(audio_path) if keep_audio else None,
            "scenario": scenario,
            "reference": reference,
        }

        def persist() -> None:
            if keep_audio:  # the file first: a row never points at audio that is not there
                self.audio_dir.mkdir(parents=True, exist_ok=True)
                sf.write(audio_path, decoded.samples, SAMPLE_RATE, subtype="PCM_16")
            self.store.append(record)

        try:
            await anyio.to_thread.run_sync(persist)
        except Exception:
            logger.exception("request %s: could not write the prediction log", request_id)
            raise Rejected(
                503, "log_unavailable", "the prediction log is unavailable; retry"
            ) from None
        return Transcript(
            transcript=result.text,
            confidence=confidence,
            duration_s=round(features["duration_s"], 4),
            model_version=result.model_version,
            request_id=request_id,
            latency_ms=round(latency_ms, 2),
        )

    @bentoml.api(route="/admin/reload")
    async def admin_reload(self, ctx: bentoml.Context) -> dict[str, Any]:
        """Reload the model now (header `Authorization: Bearer <VOICECYCLE_ADMIN_TOKEN>`)."""
        header = ctx.request.headers.get("authorization", "")
        if self.admin_token is None:
            ctx.response.status_code = 403
            return {
                "error": "admin reload is disabled: VOICECYCLE_ADMIN_TOKEN is not set",
                "code": "admin_disabled",
            }
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(
            token.strip().encode(), self.admin_token.encode()
        ):
            ctx.response.status_code = 403
            return {
                "error": "a valid 'Authorization: Bearer <token>' header is required",
                "code": "forbidden",
            }
        previous = self._served.tag if self._served else None
        try:
            swapped = await anyio.to_thread.run_sync(lambda: self.reload(retry_failed=True))
        except Exception as exc:
            logger.exception("admin reload failed")
            ctx.response.status_code = 500
            return {
                "error": f"reload failed, still serving {previous}: {exc}",
                "code": "reload_failed",
            }
        served = self._served
        return {
            "reloaded": swapped,
            "previous_tag": previous,
            "model_tag": served.tag if served else None,
            "model_version": served.version if served else None,
        }


# (mypy sees the class; the decorator made it a bentoml Service)
VoiceSearchASR.add_asgi_middleware(  # type: ignore[attr-defined]
    UploadGate,
    max_bytes=MAX_UPLOAD_BYTES + MULTIPART_SLACK_BYTES,
    paths=("/transcribe",),
    gauge=TRANSCRIBE_REQUESTS,
    max_active=MAX_IN_FLIGHT,
)
