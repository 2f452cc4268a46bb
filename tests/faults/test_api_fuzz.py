"""API fuzzing: schemathesis against the real service's own schema (`GET /docs.json`); every
answer, 4xx included, is one the schema declares, and none is a 5xx."""

from __future__ import annotations

import pytest
import requests
import schemathesis

from bench.api_fuzz import fuzz_api, violations
from bench.harness import ADMIN_TOKEN, Server
from bench.mutations import encode

pytestmark = pytest.mark.slow

MALFORMED_FORM = (
    b'--XX\r\nContent-Disposition: form-data; name="audio"; filename="a"\r\n'
    b"\xc3: x\r\n\r\nabc\r\n--XX--\r\n"
)


def test_schemathesis_finds_no_5xx_and_no_undeclared_answer(fault_server: Server) -> None:
    report = fuzz_api(fault_server.url, max_examples=8)
    assert report.cases > 30
    assert not report.five_xx, report.five_xx[:3]
    assert not report.violations, report.violations[:3]
    # the fuzz reached the refusals, not just the health routes
    assert any(key.startswith("POST /transcribe 4") for key in report.statuses), report.statuses


def test_answers_schemathesis_rarely_makes_conform_too(fault_server: Server) -> None:
    """A transcription, BentoML's own form refusals and an authorised reload, checked
    against the declared schema like the fuzzed ones."""
    schema = schemathesis.openapi.from_url(fault_server.url + "/docs.json")
    transcribe = schema["/transcribe"]["POST"].Case(media_type="multipart/form-data", body={})
    reload = schema["/admin/reload"]["POST"].Case(media_type="application/json", body={})
    url = fault_server.url
    wav = encode("WAV", "PCM_16", 16000, 1, 1.0)
    answers = {
        "transcribed": (transcribe, requests.post(f"{url}/transcribe", files={"audio": wav})),
        "malformed form": (
            transcribe,
            requests.post(
                f"{url}/transcribe",
                data=MALFORMED_FORM,
                headers={"content-type": "multipart/form-data; boundary=XX"},
            ),
        ),
        "no boundary": (
            transcribe,
            requests.post(
                f"{url}/transcribe", data=b"", headers={"content-type": "multipart/form-data"}
            ),
        ),
        "bad field": (
            transcribe,
            requests.post(f"{url}/transcribe", files={"audio": wav}, data={"consent": "maybe"}),
        ),
        "reloaded": (
            reload,
            requests.post(
                f"{url}/admin/reload",
                json={},
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                timeout=60,
            ),
        ),
    }
    statuses = {name: response.status_code for name, (_, response) in answers.items()}
    assert statuses == {
        "transcribed": 200,
        "malformed form": 400,
        "no boundary": 400,
        "bad field": 400,
        "reloaded": 200,
    }
    for name, (case, response) in answers.items():
        assert not violations(case, response, name), response.text
        if response.status_code == 400:
            body = response.json()
            assert body["code"] == "bad_form" and body["request_id"], body
    assert "consent" in answers["bad field"][1].json()["error"]
