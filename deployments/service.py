"""The voice-search speech recogniser as a BentoML 1.4 service.

`POST /transcribe` takes an audio upload (WAV/FLAC/OGG, any rate and channel count), checks it,
converts it to 16 kHz mono, transcribes it through an adaptively batched model call, writes a
row to the prediction log and only then answers. `GET /healthz`, `GET /readyz` (model loaded),
`GET /metadata` (model lineage, targets, serving settings), `POST /admin/reload`.

How batching applies. BentoML batches calls of a `batchable=True` API that arrive through the
server. Inside a served instance, BentoML sets `__self_proxy__`, and `self.to_async.recognize`
goes through that proxy: an in-process HTTP hop (aiohttp over an ASGI connector, JSON) into
`/recognize`, whose dispatcher merges concurrent calls into one list. Called as a plain object
(tests), the same line runs `recognize` directly with a batch of one. `/recognize` is thus a
route of the service too; it refuses any call without this process's random key, so traffic
cannot skip validation or the prediction log.

What is fixed at import. BentoML reads batching limits, traffic limits and middlewares when
the class is decorated, so this module reads the `serving` and `audio` blocks of the scope
(`VOICECYCLE_SCOPE`) once at import. Everything else (the workspace, the prediction store, the
model) is set up when the service is instantiated.

Environment (set by `voicecycle serve`):
  VOICECYCLE_SCOPE        path to scope.yaml (default: the defaults of `Scope()`)
  VOICECYCLE_WORKSPACE    overrides `state.workspace`
  VOICECYCLE_MODEL_TAG    BentoML model tag to serve (default "<registry.model_name>:latest")
  VOICECYCLE_ADMIN_TOKEN  bearer token for `POST /admin/reload`; unset: reload answers 403
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import secrets
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import anyio.to_thread
import bentoml
import numpy as np
import soundfile as sf
from bentoml.exceptions import BentoMLException, NotFound
from pydantic import BaseModel, BeforeValidator, Field
from scipy.signal import resample_poly
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
MAX_BATCH_SIZE = max(2, _SCOPE_AT_IMPORT.serving.max_batch_size)  # BentoML requires > 1
MAX_LATENCY_MS = _SCOPE_AT_IMPORT.serving.max_latency_ms
MAX_UPLOAD_BYTES = _SCOPE_AT_IMPORT.audio.max_upload_bytes
# Requests past this many in flight get 503 at once instead of queueing behind the batcher.
MAX_IN_FLIGHT = 4 * MAX_BATCH_SIZE
# BentoML's own limit (429 past it) counts the inner /recognize hop too: room for both.
MAX_CONCURRENCY = 2 * MAX_IN_FLIGHT + 16


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


class Clip(BaseModel):
    """One clip on its way to the batcher: float32 little-endian 16 kHz mono, base64."""

    samples_b64: str
    key: str = Field(description="this process's internal key; /recognize is not public")


class Recognition(BaseModel):
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
    mono = audio.mean(axis=1)  # (S,)
    if rate != SAMPLE_RATE:
        ratio = Fraction(SAMPLE_RATE, rate).limit_denominator(MAX_RESAMPLE_DENOMINATOR)
        mono = resample_poly(mono, ratio.numerator, ratio.denominator)
    return DecodedAudio(np.ascontiguousarray(mono, dtype=np.float32), rate, audio.shape[1])


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


def share_cores_with_the_event_loop() -> int:
    """Give torch all cores but one; returns the intra-op thread count.

    The event loop (multipart parsing, decoding, the batching hop, the log write) runs in
    the same process; with torch on every core it waits for each batch to finish, and on
    two cores throughput at concurrency 8 dropped by about a fifth in our measurements.
    """
    import torch

    threads = max(1, (os.cpu_count() or 2) - 1)
    torch.set_num_threads(threads)
    return threads


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


# -- the HTTP pieces BentoML's API methods cannot express --------------------------------------


class UploadLimit:
    """Answer 413 before reading a /transcribe body larger than the upload limit allows."""

    def __init__(self, app: Any, max_bytes: int, paths: tuple[str, ...]) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.paths = paths

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
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
    workers=1,  # one process owns both cores; torch parallelises inside a batch
    threads=1,  # one batch through the model at a time; the others queue in the batcher
    traffic={"timeout": TRAFFIC_TIMEOUT_S, "max_concurrency": MAX_CONCURRENCY},
    # BentoML 1.4.39 closes the self-proxy's HTTP session every `max_requests` calls or
    # `max_age` seconds while other calls are still in flight on it; under concurrent load
    # those fail with "Server disconnected" (bentoml/BentoML#5540). The hop is in-process
    # (an ASGI connector), so there is nothing to gain from refreshing: never refresh.
    runner_connection={"max_requests": 2**31 - 1, "max_age": 10.0**9},
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
        self.batch_sizes: Counter[int] = Counter()
        self._batch_sizes_lock = threading.Lock()
        self._key = secrets.token_hex(16)
        self._served: ServedModel | None = None
        self._reload_lock = threading.Lock()
        self._failed_tag: str | None = None  # a model that did not load is not retried by polls
        self._in_flight = 0
        self._stop = threading.Event()
        self.torch_threads = share_cores_with_the_event_loop()
        self.purge_audio()
        self.reload()
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
        """Stop the poller and release the prediction store."""
        self._stop.set()
        if self._poller.is_alive() and self._poller is not threading.current_thread():
            self._poller.join(timeout=5)
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
        with self._batch_sizes_lock:
            batch_sizes = dict(self.batch_sizes)
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
                "observed_batch_sizes": {str(k): v for k, v in sorted(batch_sizes.items())},
            },
            "limits": {"max_in_flight": MAX_IN_FLIGHT, "timeout_s": TRAFFIC_TIMEOUT_S},
            "torch_threads": self.torch_threads,
        }

    # -- the batched model call ----------------------------------------------------------------

    @bentoml.api(batchable=True, max_batch_size=MAX_BATCH_SIZE, max_latency_ms=MAX_LATENCY_MS)
    def recognize(self, clips: list[Clip]) -> list[Recognition]:
        """Internal: the batched model call behind /transcribe (refuses calls without the key)."""
        if not all(secrets.compare_digest(clip.key, self._key) for clip in clips):
            raise BentoMLException(
                "recognize is internal to the service", error_code=HTTPStatus.FORBIDDEN
            )
        served = self._served  # one model for the whole batch, even if a reload swaps now
        if served is None:
            raise BentoMLException("no model loaded", error_code=HTTPStatus.SERVICE_UNAVAILABLE)
        with self._batch_sizes_lock:
            self.batch_sizes[len(clips)] += 1
        logger.debug("recognize: batch of %d", len(clips))
        waves = [np.frombuffer(base64.b64decode(c.samples_b64), dtype="<f4").copy() for c in clips]
        results = served.recognizer.transcribe(waves)
        return [
            Recognition(
                text=r.text,
                confidence=r.confidence,
                duration_s=r.duration_s,
                model_tag=served.tag,
                model_version=served.version,
            )
            for r in results
        ]

    async def _recognize(self, samples: np.ndarray) -> Recognition:
        encoded = base64.b64encode(samples.astype("<f4").tobytes()).decode("ascii")
        clip = Clip(samples_b64=encoded, key=self._key)
        try:
            (result,) = await self.to_async.recognize([clip])  # type: ignore[attr-defined]
        except BentoMLException as exc:
            status = int(exc.error_code)
            if status in (429, 503, 504):
                raise Rejected(
                    503,
                    "overloaded",
                    f"the recogniser could not take the request ({status}); retry",
                ) from None
            raise
        return result if isinstance(result, Recognition) else Recognition.model_validate(result)

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
        try:
            return await self._transcribe(request_id, audio, consent, client, scenario, reference)
        except Rejected as exc:
            logger.info("request %s rejected (%d %s): %s", request_id, exc.status, exc.code, exc)
            return _rejection(exc, request_id)  # type: ignore[return-value]
        finally:
            self._in_flight -= 1

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

        def prepare() -> tuple[DecodedAudio, dict[str, float]]:
            decoded = decode_audio(audio.read_bytes(), max_duration_s)
            return decoded, compute_audio_features(decoded.samples, SAMPLE_RATE).as_dict()

        decoded, features = await anyio.to_thread.run_sync(prepare)
        result = await self._recognize(decoded.samples)
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
    UploadLimit, max_bytes=MAX_UPLOAD_BYTES + MULTIPART_SLACK_BYTES, paths=("/transcribe",)
)
