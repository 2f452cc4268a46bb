"""The BentoML service, called directly as a Python class and over in-process HTTP (to_asgi)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonschema
import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from data_contracts.prediction_store import PredictionStore
from deployments.errors import ErrorBody
from models.audio import UnusableAudio
from tests.service.conftest import (
    METADATA,
    MODEL_NAME,
    StoredModel,
    encode,
    save_random_recognizer,
    service_arguments,
    speechlike,
    write_admin_token,
    write_scope,
)

ADMIN_TOKEN = "test-admin-token"
RESPONSE_FIELDS = {
    "transcript",
    "confidence",
    "duration_s",
    "model_version",
    "request_id",
    "latency_ms",
}


def logged(workspace: Path) -> pd.DataFrame:
    store = PredictionStore(f"sqlite:///{workspace.resolve() / 'predictions.db'}")
    try:
        return store.read()
    finally:
        store.close()


@pytest.fixture
def service(service_env: Path) -> Iterator[Any]:
    from deployments.service import VoiceSearchASR

    svc = VoiceSearchASR()
    yield svc
    svc.close()


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# -- the class called directly -------------------------------------------------------------


def test_direct_call_transcribes_and_logs_before_answering(
    service: Any, service_env: Path, tmp_path: Path, valid_wav: bytes
) -> None:
    audio = write(tmp_path, "q.wav", valid_wav)
    result = asyncio.run(
        service.transcribe(
            audio=audio,
            consent=True,
            client='{"app": "4.2.0", "device": "pixel"}',
        )
    )

    assert set(result.model_dump()) == RESPONSE_FIELDS
    assert result.model_version == METADATA["registry_version"]
    assert result.duration_s == pytest.approx(3.0, abs=0.01)
    assert 0.0 <= result.confidence <= 1.0
    rows = logged(service_env)
    row = rows.set_index("request_id").loc[result.request_id]
    assert row["transcript"] == result.transcript
    assert row["model_tag"] == service.served.tag
    assert json.loads(row["client"]) == {"app": "4.2.0", "device": "pixel"}
    assert bool(row["consent"]) and "reference" not in row and "scenario" not in row
    assert row["n_words"] == len(result.transcript.split())
    assert row["rms_dbfs"] < 0 and 0 <= row["silence_share"] <= 1
    kept, rate = sf.read(row["audio_path"])  # consent: kept as 16 kHz mono WAV
    assert rate == 16000 and kept.ndim == 1 and len(kept) == 48000


def test_without_consent_no_audio_is_kept(
    service: Any, service_env: Path, tmp_path: Path, valid_wav: bytes
) -> None:
    result = asyncio.run(service.transcribe(audio=write(tmp_path, "q.wav", valid_wav)))
    row = logged(service_env).set_index("request_id").loc[result.request_id]
    assert row["audio_path"] is None and not row["consent"]
    assert not (service_env / "prediction_audio").exists()


def test_direct_call_rejects_bad_input_with_an_error_body(service: Any, tmp_path: Path) -> None:
    response = asyncio.run(service.transcribe(audio=write(tmp_path, "e.wav", b"")))
    assert isinstance(response, ErrorBody)
    assert (response.status, response.code) == (400, "empty_upload")
    assert response.error and response.request_id


def test_past_the_in_flight_limit_requests_get_503_at_once(service: Any, tmp_path: Path) -> None:
    service.in_flight.active = service.in_flight.limit  # as if that many were being served
    started = time.perf_counter()
    response = asyncio.run(service.transcribe(audio=write(tmp_path, "e.wav", b"")))
    assert isinstance(response, ErrorBody)
    assert (response.status, response.code) == (503, "overloaded")
    assert time.perf_counter() - started < 1.0
    service.in_flight.active = 0
    assert asyncio.run(service.transcribe(audio=write(tmp_path, "e.wav", b""))).status == 400


def test_metadata_carries_lineage_targets_and_serving(service: Any) -> None:
    meta = service.metadata()
    assert meta["ready"] is True
    assert meta["model_version"] == "1"
    assert meta["dataset_version"] == METADATA["dataset_version"]
    assert meta["metrics"] == METADATA["metrics"]
    assert meta["model_tag"].startswith(f"{MODEL_NAME}:")
    assert meta["targets"]["wer_car"] == pytest.approx(0.20)
    assert meta["serving"]["max_batch_size"] == 8


def test_import_recognizer_is_idempotent(stored_model: StoredModel) -> None:
    from tasks.packaging import import_recognizer

    again = import_recognizer(stored_model.recognizer_dir, MODEL_NAME, METADATA, {})
    assert again == stored_model.tag


def test_without_a_model_the_service_starts_unready(
    service_env: Path, tmp_path: Path, valid_wav: bytes
) -> None:
    from deployments.service import VoiceSearchASR

    with service_arguments(workspace=service_env, model_tag="no-such-model:latest"):
        svc = VoiceSearchASR()
    try:
        assert svc.__is_ready__() is False
        response = asyncio.run(svc.transcribe(audio=write(tmp_path, "q.wav", valid_wav)))
        assert isinstance(response, ErrorBody)
        assert (response.status, response.code) == (503, "not_ready")
    finally:
        svc.close()


def test_a_new_model_version_is_picked_up_without_restart(
    stored_model: StoredModel,
    service_env: Path,
    tmp_path: Path,
    valid_wav: bytes,
) -> None:
    from deployments.service import VoiceSearchASR
    from tasks.packaging import import_recognizer

    name = "voicecycle-reload-test"  # its own model name: other tests keep serving version 1
    scope = write_scope(tmp_path / "scope.yaml", service_env, reload_poll_seconds=0.2)
    import_recognizer(stored_model.recognizer_dir, name, {**METADATA, "registry_version": "7"}, {})
    with service_arguments(scope=scope, workspace=service_env, model_tag=f"{name}:latest"):
        svc = VoiceSearchASR()
    try:
        audio = write(tmp_path, "q.wav", valid_wav)
        assert asyncio.run(svc.transcribe(audio=audio)).model_version == "7"
        old = svc.served

        new_dir = save_random_recognizer(tmp_path / "v8", seed=1)
        tag = import_recognizer(new_dir, name, {**METADATA, "registry_version": "8"}, {})
        deadline = time.monotonic() + 20
        while svc.served.tag != tag and time.monotonic() < deadline:
            time.sleep(0.1)

        assert svc.served.tag == tag and svc.served is not old
        assert asyncio.run(svc.transcribe(audio=audio)).model_version == "8"
        assert svc.reload() is False  # nothing newer: no reload
    finally:
        svc.close()


# -- in-process HTTP through to_asgi() ---------------------------------------------------------


@pytest.fixture(scope="module")
def http(stored_model: StoredModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from starlette.testclient import TestClient

    from deployments.service import VoiceSearchASR

    workspace = tmp_path_factory.mktemp("http") / "workspace"
    write_admin_token(workspace, ADMIN_TOKEN)
    with service_arguments(workspace=workspace):
        with TestClient(VoiceSearchASR.to_asgi()) as client:
            client.workspace = workspace
            yield client


def upload(http: Any, data: bytes, name: str = "q.wav", **fields: str) -> Any:
    return http.post("/transcribe", files={"audio": (name, data, "audio/wav")}, data=fields)


def test_the_log_holds_nothing_from_the_simulator(
    http: Any, tmp_path: Path, valid_wav: bytes
) -> None:
    """What the simulator sends is what a phone sends; its truth stays in its own ledger."""
    import sqlalchemy as sa

    from tasks.simulation import Clip, read_ledger, send

    truth = "who is oriane kolawole"
    clips = [Clip(valid_wav, truth, "new", "car"), Clip(valid_wav, truth, "new", "clean")]
    ledger = tmp_path / "sim" / "ledger.jsonl"
    sent = send(
        "http://testserver/transcribe",
        clips,
        "mixed",
        concurrency=1,
        ledger=ledger,
        transport=http._transport,  # the in-process app, over the simulator's own client
    )
    assert sent.ok == 2, sent.summary()
    known = read_ledger(ledger)
    assert set(known) == set(sent.request_ids)
    assert {r["reference"] for r in known.values()} == {truth}
    url = f"sqlite:///{http.workspace / 'predictions.db'}"
    with sa.create_engine(url).connect() as conn:
        stored = conn.execute(sa.text("SELECT * FROM prediction_log")).mappings().all()
    rows = [dict(r) for r in stored if r["request_id"] in known]
    assert len(rows) == 2
    for row in rows:  # every stored column: nothing names the scenario or the true transcript
        assert not {"reference", "scenario"} & set(row)
        for column, value in row.items():
            assert truth not in str(value) and "mixed" not in str(value), column
        assert json.loads(row["client"]) == {"app": "simulator/1"}


def test_http_valid_upload_is_transcribed_and_logged(http: Any, valid_wav: bytes) -> None:
    response = upload(
        http,
        valid_wav,
        client='{"app": "4.2.0"}',
        consent="false",
    )

    assert response.status_code == 200, response.text
    result = response.json()
    assert set(result) == RESPONSE_FIELDS
    assert result["model_version"] == "1"
    assert result["duration_s"] == pytest.approx(3.0, abs=0.01)
    row = logged(http.workspace).set_index("request_id").loc[result["request_id"]]
    assert row["transcript"] == result["transcript"]
    assert row["latency_ms"] == pytest.approx(result["latency_ms"], abs=0.01)
    # BentoML JSON-decodes multipart fields; the service turns them back into text
    assert json.loads(row["client"]) == {"app": "4.2.0"}


@pytest.mark.parametrize(
    ("fmt", "subtype", "rate", "channels"),
    [("FLAC", "PCM_16", 48000, 1), ("OGG", "VORBIS", 22050, 2), ("WAV", "FLOAT", 8000, 4)],
)
def test_http_accepts_other_formats_rates_and_channels(
    http: Any, fmt: str, subtype: str, rate: int, channels: int
) -> None:
    data = encode(speechlike(1.5, rate, channels), rate, fmt, subtype)
    response = upload(http, data, name=f"q.{fmt.lower()}")
    assert response.status_code == 200, response.text
    assert response.json()["duration_s"] == pytest.approx(1.5, abs=0.02)


def _nan_wav() -> bytes:
    audio = speechlike(1.0, 16000)
    audio[100] = np.nan
    return encode(audio, 16000, subtype="FLOAT")


BAD_INPUTS = {
    "empty": (lambda w: b"", 400, "empty_upload"),
    "over the limit (rejected before reading)": (
        lambda w: b"\0" * 4_100_000,
        413,
        "upload_too_large",
    ),
    "over the limit (inside the multipart slack)": (
        lambda w: b"\0" * 4_000_100,
        413,
        "upload_too_large",
    ),
    "not audio": (lambda w: b"this is not audio at all" * 50, 415, "undecodable_audio"),
    "truncated wav": (lambda w: w[: len(w) // 2], 415, "undecodable_audio"),
    "truncated flac": (
        lambda w: encode(speechlike(2.0, 16000), 16000, "FLAC")[:20_000],
        415,
        "undecodable_audio",
    ),
    "nan samples": (lambda w: _nan_wav(), 400, "non_finite_samples"),
    "too long": (
        lambda w: encode(speechlike(13.0, 8000), 8000, subtype="PCM_16"),
        413,
        "audio_too_long",
    ),
    "too short": (lambda w: encode(speechlike(0.01, 16000), 16000), 400, "audio_too_short"),
    "rate too low": (lambda w: encode(speechlike(1.0, 3000), 3000), 400, "bad_sample_rate"),
    "rate too high": (lambda w: encode(speechlike(0.5, 200_000), 200_000), 400, "bad_sample_rate"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_http_bad_audio_gets_a_named_4xx(http: Any, valid_wav: bytes, case: str) -> None:
    make, status, code = BAD_INPUTS[case]
    response = upload(http, make(valid_wav))
    assert response.status_code == status, response.text
    payload = response.json()
    assert payload["code"] == code
    assert isinstance(payload["error"], str) and payload["error"]


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"client": "not json"}, "bad_client_json"),
        ({"client": "[1, 2]"}, "bad_client_json"),
    ],
)
def test_http_bad_fields_get_a_named_400(
    http: Any, valid_wav: bytes, fields: dict[str, str], code: str
) -> None:
    response = upload(http, valid_wav, **fields)
    assert response.status_code == 400
    assert response.json()["code"] == code


@pytest.mark.parametrize("fields", [{}, {"consent": "maybe"}])
def test_http_malformed_forms_are_400_from_bentoml(
    http: Any, valid_wav: bytes, fields: dict[str, str]
) -> None:
    if fields:
        response = upload(http, valid_wav, **fields)
    else:  # no audio part at all
        response = http.post("/transcribe", data={"consent": "true"})
    assert response.status_code == 400
    assert "validation error" in response.json()["error"]


def test_http_chunked_upload_over_the_limit_is_413(http: Any) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(80):
            yield b"\0" * 65536

    response = http.post(
        "/transcribe", content=chunks(), headers={"content-type": "multipart/form-data; boundary=x"}
    )
    assert response.status_code == 413
    assert response.json()["code"] == "upload_too_large"


def test_http_past_the_limit_is_503_before_the_upload_is_read(
    http: Any, valid_wav: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bentoml

    in_flight = bentoml.get_current_service().in_flight
    monkeypatch.setattr(in_flight, "active", in_flight.limit)  # as if that many inside
    response = upload(http, valid_wav)
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    assert response.json()["code"] == "overloaded"
    monkeypatch.undo()
    assert in_flight.active == 0
    assert upload(http, valid_wav).status_code == 200  # and the count is back where it was
    assert in_flight.active == 0


def test_http_a_request_is_counted_once(http: Any, valid_wav: bytes) -> None:
    import bentoml

    # The gate counts an HTTP request; the handler must not count it again, or half the
    # limit would already refuse: with one place left, a request still gets in.
    in_flight = bentoml.get_current_service().in_flight
    in_flight.active = in_flight.limit - 1
    try:
        assert upload(http, valid_wav).status_code == 200
    finally:
        in_flight.active = 0


def test_http_openapi_declares_the_error_body(http: Any) -> None:
    spec = http.get("/docs.json").json()
    schemas = spec["components"]["schemas"]
    assert set(schemas["ErrorBody"]["required"]) >= {"error", "code", "status"}
    responses = spec["paths"]["/transcribe"]["post"]["responses"]
    for status in ("400", "413", "415", "503"):
        ref = responses[status]["content"]["application/json"]["schema"]["$ref"]
        assert ref == "#/components/schemas/ErrorBody"
    assert "audio_too_long" in responses["413"]["description"]
    reload_responses = spec["paths"]["/admin/reload"]["post"]["responses"]
    assert "ErrorBody" in reload_responses["403"]["content"]["application/json"]["schema"]["$ref"]


@pytest.mark.parametrize(
    "case", ["empty", "truncated wav", "too short", "over the limit (rejected before reading)"]
)
def test_http_a_4xx_body_matches_the_declared_schema(
    http: Any, valid_wav: bytes, case: str
) -> None:
    make, status, code = BAD_INPUTS[case]
    schema = http.get("/docs.json").json()["components"]["schemas"]["ErrorBody"]
    response = upload(http, make(valid_wav))
    assert response.status_code == status
    jsonschema.validate(response.json(), schema)
    assert response.json()["status"] == status and response.json()["code"] == code


PYFUNC_CASES = ["empty", "not audio", "truncated wav", "nan samples", "too short", "rate too low"]


@pytest.mark.parametrize("case", PYFUNC_CASES)
def test_the_pyfunc_rejects_a_bad_upload_with_the_service_code(
    http: Any, valid_wav: bytes, case: str
) -> None:
    from tasks.mlflow_model import RecognizerPyfunc

    data = BAD_INPUTS[case][0](valid_wav)
    served_code = upload(http, data).json()["code"]
    frame = pd.DataFrame({"audio_base64": [base64.b64encode(data).decode()]})
    with pytest.raises(UnusableAudio) as refused:
        RecognizerPyfunc().predict(None, frame)  # decoding comes before the model
    assert refused.value.code == served_code == BAD_INPUTS[case][2]


def test_http_health_metadata_and_docs(http: Any) -> None:
    assert http.get("/healthz").status_code == 200
    assert http.get("/readyz").status_code == 200
    meta = http.get("/metadata")
    assert meta.status_code == 200
    assert meta.json()["model_version"] == "1"
    assert meta.json()["dataset_version"] == METADATA["dataset_version"]
    spec = http.get("/docs.json")
    assert spec.status_code == 200
    assert "/transcribe" in spec.json()["paths"]


def test_http_admin_reload_needs_the_token(http: Any) -> None:
    assert http.post("/admin/reload").status_code == 403
    wrong = http.post("/admin/reload", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403
    ok = http.post("/admin/reload", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert ok.status_code == 200
    assert ok.json()["reloaded"] is False and ok.json()["model_version"] == "1"


def test_admin_reload_is_disabled_without_a_configured_token(service: Any) -> None:
    # Called directly: a second to_asgi() app in one process trips BentoML's metrics registry.
    ctx = SimpleNamespace(
        request=SimpleNamespace(headers={"authorization": "Bearer anything"}),
        response=SimpleNamespace(status_code=200, headers={}),
    )
    result = asyncio.run(service.admin_reload(ctx))  # service_env: no token file
    assert ctx.response.status_code == 403
    assert isinstance(result, ErrorBody) and result.code == "admin_disabled"


def test_http_has_no_internal_batch_route(http: Any) -> None:
    # Batching is in-process (deployments.batcher.Batcher): no route skips validation or the log.
    response = http.post("/recognize", json={"clips": [{"samples_b64": "AAAA", "key": "guess"}]})
    assert response.status_code in (404, 405)
    assert "/recognize" not in http.get("/docs.json").json()["paths"]


def test_concurrent_direct_calls_are_batched_and_all_logged(
    service: Any, service_env: Path, tmp_path: Path, valid_wav: bytes
) -> None:
    audio = write(tmp_path, "q.wav", valid_wav)

    async def burst() -> list[Any]:
        return list(await asyncio.gather(*(service.transcribe(audio=audio) for _ in range(8))))

    results = asyncio.run(burst())

    assert all(r.model_version == "1" for r in results)
    assert {r.request_id for r in results} <= set(logged(service_env)["request_id"])
    batching = service.metadata()["batching"]
    assert batching["max_batch_size"] == 8 and batching["batch_window_ms"] > 0
    assert max(int(size) for size in batching["observed_batch_sizes"]) > 1
