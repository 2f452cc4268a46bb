"""The voice-search speech recogniser as a BentoML 1.4 service.

`POST /transcribe` takes an audio upload (WAV/FLAC/OGG, any rate and channel count), checks
and converts it to 16 kHz mono (models.audio), transcribes it through this process's batcher
(deployments/batcher.py), writes a row to the prediction log and only then answers.
`GET /healthz`, `GET /readyz` (model loaded), `GET /metadata` (lineage, targets, serving
settings, batch sizes formed), `POST /admin/reload`. A refusal is a JSON `ErrorBody` with a
4xx, or 503 on overload (deployments/errors.py, deployments/admission.py).

Settings come from the scope named by the template arguments (deployments/arguments.py:
`bentoml serve deployments.service:VoiceSearchASR --arg scope=... --arg workspace=...`).
`serving.workers` processes (default: one per core; Python's GIL holds one process to about
one core) each run this class: their own model, batcher, event loop and connection to the
prediction log (SQLite in WAL mode takes writers from several processes). A process picks up
a new champion at its next poll (`serving.reload_poll_seconds`); `POST /admin/reload` (bearer
token from `state.admin_token_file`) reloads the process that answers it at once. Every
response names the version that served it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from pathlib import Path
from typing import Any, cast

import anyio.to_thread
import bentoml

from data_contracts.prediction_store import PredictionStore
from deployments.admission import MULTIPART_SLACK_BYTES, InFlight, UploadGate, bearer_matches
from deployments.api_types import (
    FormText,
    ReloadResult,
    Transcript,
    check_upload_size,
    parse_client,
)
from deployments.batcher import Batcher, Gauge
from deployments.errors import (
    RELOAD_ERRORS,
    TRANSCRIBE_ERRORS,
    ErrorBody,
    Rejected,
    UniformErrors,
    as_rejected,
    retry_headers,
)
from deployments.metadata_app import metadata_app, service_metadata
from deployments.metrics import service_metrics
from deployments.openapi import DocumentedErrors, PageAndDocs
from deployments.pipeline import Answer, LogWriter, decode_upload
from deployments.served_model import ModelSlot, ServedModel
from deployments.settings import TRAFFIC_TIMEOUT_S, current_settings
from models.audio import UnusableAudio

logger = logging.getLogger("voicecycle.service")

PURGE_EVERY_S = 3600.0
# BentoML takes workers, the model to pack and the middlewares' limits at decoration; the
# instance gets the same settings object (deployments/settings.py: read once per arguments).
DECORATION = current_settings()


def _refuse(exc: Rejected, request_id: str | None, ctx: Any) -> ErrorBody:
    """The ErrorBody of a refusal; over HTTP, its status (and Retry-After) on the response."""
    if ctx is not None:
        ctx.response.status_code = exc.status
        ctx.response.headers.update(retry_headers(exc.status))
    return exc.body(request_id)


@bentoml.service(
    name="VoiceSearchASR",
    workers=DECORATION.workers,  # processes: each its own model, batcher and event loop
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
    # is missing. `bentoml serve` resolves it before start-up and refuses to start without
    # the model, while a directly instantiated service starts unready (readyz 503).
    asr_model = bentoml.models.BentoModel(DECORATION.model_tag)

    def __init__(self) -> None:
        self.settings = settings = current_settings()
        self.store = PredictionStore(
            settings.scope.state.url("prediction_log_url"),
            busy_timeout_ms=settings.scope.serving.log_busy_timeout_ms,
        )
        self.model = ModelSlot(settings.model_tag, settings.scope.state.path("hot_words_dir"))
        self.in_flight = InFlight(settings.max_in_flight)
        self._submitted = Gauge()  # admitted (at the upload gate) and queued at the batcher
        self._stop = threading.Event()
        self.metrics = service_metrics()
        import torch

        torch.set_num_threads(settings.torch_threads)  # also for model loads in other threads
        self.purge_audio()
        self.reload()
        self.batcher = Batcher(
            lambda: self.model.current,
            settings.max_batch_size,
            settings.batch_window_ms / 1000.0,
            settings.max_latency_ms / 1000.0,
            settings.torch_threads,
            incoming=lambda: self.in_flight.active - self._submitted.active,
            on_batch=self.metrics.batch,
        )
        self.log = LogWriter(self.store, on_failure=self.metrics.log_write_failed)
        self._poller = threading.Thread(target=self._poll, name="model-poller", daemon=True)
        self._poller.start()

    # -- lifecycle ---------------------------------------------------------------------------

    def reload(self, retry_failed: bool = False) -> bool:
        """Swap in the model the tag resolves to now, if it changed (see ModelSlot)."""
        before = self.model.current
        swapped = self.model.reload(retry_failed)
        served = self.model.current
        if swapped and served is not None:
            previous = (before.tag, before.version) if before else None
            self.metrics.serving(served.tag, served.version, previous)
        return swapped

    @property
    def served(self) -> ServedModel | None:
        return self.model.current

    def purge_audio(self) -> int:
        """Delete consented audio past the retention period."""
        days = self.settings.scope.serving.audio_retention_days
        removed = self.store.purge_audio(days, self.settings.audio_dir)
        if removed:
            logger.info("purged %d stored audio files past retention", removed)
        return removed

    def _poll(self) -> None:
        last_purge = time.monotonic()
        while not self._stop.wait(self.settings.scope.serving.reload_poll_seconds):
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
        self.log.close()
        self.store.close()

    def __is_ready__(self) -> bool:
        return self.model.current is not None

    def metadata(self) -> dict[str, Any]:
        """Model lineage, the scope's targets and the serving settings (GET /metadata)."""
        return service_metadata(self.model.current, self.settings, self.batcher.stats())

    # -- public API ----------------------------------------------------------------------------

    @bentoml.api(output_spec=Transcript)
    async def transcribe(
        self,
        audio: Path,
        consent: bool = False,
        client: FormText = "{}",
        ctx=None,  # unannotated so BentoML passes its Context; direct calls leave it out
    ) -> Transcript | ErrorBody:
        """Transcribe one voice query (WAV/FLAC/OGG upload, any sample rate and channels).

        `client` is a JSON object of client metadata (app version, device, ...). With
        `consent`, the audio is kept (16 kHz WAV) for the retention period.
        `latency_ms` runs from the handler's start (the upload already parsed) to the
        transcript, before the log write. A refusal is an ErrorBody `{error, code, status,
        request_id}` with a 4xx (or 503) status.
        """
        request_id = uuid.uuid4().hex
        try:
            counted = self.in_flight.admit()
        except Rejected as exc:
            self.metrics.refused(exc.status, exc.code)
            return _refuse(exc, request_id, ctx)
        try:
            answer = await self._transcribe(request_id, audio, consent, client)
        except (Rejected, UnusableAudio) as exc:
            refusal = as_rejected(exc)
            logger.info("request %s refused: %r", request_id, refusal)
            self.metrics.refused(refusal.status, refusal.code)
            return _refuse(refusal, request_id, ctx)
        else:
            self.metrics.answered(answer.latency_ms, answer.confidence)
            return answer
        finally:
            if counted:
                self.in_flight.leave()

    async def _transcribe(
        self,
        request_id: str,
        audio: Path,
        consent: bool,
        client: str,
    ) -> Transcript:
        started = time.perf_counter()
        settings = self.settings
        if self.model.current is None:
            raise Rejected(503, "not_ready", "no model is loaded yet; retry")
        client_meta = parse_client(client)
        check_upload_size(audio.stat().st_size, settings.max_upload_bytes)
        decoded, pending = decode_upload(audio, settings.scope.audio.max_duration_s, self.batcher)
        with self._submitted:  # queued: the batcher no longer waits for it as incoming
            try:
                result = await asyncio.wrap_future(pending)
            except BaseException:
                pending.cancel()  # dropped from its batch if that has not started
                raise
            latency_ms = (time.perf_counter() - started) * 1000.0
            keep_audio = consent and settings.scope.serving.store_audio_with_consent
            audio_path = settings.audio_dir / f"{request_id}.wav" if keep_audio else None
            answer = Answer(
                request_id, result, latency_ms, decoded.samples, client_meta, consent, audio_path
            )
            logged = await asyncio.wrap_future(self.log.submit(answer))  # after its commit
        return Transcript(
            transcript=result.text,
            confidence=logged.confidence,
            duration_s=round(logged.features.duration_s, 4),
            model_version=result.model_version,
            request_id=request_id,
            latency_ms=round(latency_ms, 2),
        )

    @bentoml.api(route="/admin/reload", output_spec=ReloadResult)
    async def admin_reload(self, ctx: bentoml.Context) -> ReloadResult | ErrorBody:
        """Reload the model now (header `Authorization: Bearer <token>`, the token in the
        scope's `state.admin_token_file`; without that file reload answers 403)."""
        token = self.settings.admin_token()
        if token is None:
            where = self.settings.admin_token_file
            disabled = Rejected(403, "admin_disabled", f"admin reload is disabled: no {where}")
            return _refuse(disabled, None, ctx)
        if not bearer_matches(ctx.request.headers.get("authorization", ""), token):
            message = "a valid 'Authorization: Bearer <token>' header is required"
            return _refuse(Rejected(403, "forbidden", message), None, ctx)
        previous = self.model.current.tag if self.model.current else None
        try:
            swapped = await anyio.to_thread.run_sync(lambda: self.reload(retry_failed=True))
        except Exception as exc:
            logger.exception("admin reload failed")
            failed = Rejected(
                500, "reload_failed", f"reload failed, still serving {previous}: {exc}"
            )
            return _refuse(failed, None, ctx)
        served = self.model.current
        return ReloadResult(
            reloaded=swapped,
            previous_tag=previous,
            model_tag=served.tag if served else None,
            model_version=served.version if served else None,
        )


def _in_flight() -> InFlight:
    """The admission counter of the service instance serving in this process."""
    return bentoml.get_current_service().in_flight  # type: ignore[no-any-return]


SERVICE = cast("bentoml.Service[VoiceSearchASR]", VoiceSearchASR)  # what the decorator made
SERVICE.add_asgi_middleware(
    UploadGate,
    max_bytes=DECORATION.max_upload_bytes + MULTIPART_SLACK_BYTES,
    paths=("/transcribe",),
    in_flight=_in_flight,
    refused=lambda status, code: service_metrics().refused(status, code),
)
SERVICE.add_asgi_middleware(UniformErrors)  # BentoML's own {error, detail} as an ErrorBody
SERVICE.add_asgi_middleware(PageAndDocs)  # the voice-search page at /, Swagger at /docs
SERVICE.add_asgi_middleware(
    DocumentedErrors, errors={"/transcribe": TRANSCRIBE_ERRORS, "/admin/reload": RELOAD_ERRORS}
)
