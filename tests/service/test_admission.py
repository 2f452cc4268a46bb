"""Admission: the in-flight counter's limit and the upload gate in front of /transcribe, as
plain objects (a bare ASGI app)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from deployments.admission import InFlight, UploadGate


def test_the_counter_admits_up_to_its_limit() -> None:
    counter = InFlight(3)
    assert [counter.try_enter() for _ in range(4)] == [True, True, True, False]
    counter.leave()
    assert counter.try_enter() and not counter.try_enter()
    assert counter.limit == 3 and counter.active == 3


# -- the upload gate -------------------------------------------------------------------------


def _scope(path: str = "/transcribe", length: int = 1000) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": [(b"content-length", str(length).encode())],
    }


def _call(gate: UploadGate, scope: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """Run one request through the gate; what it sent, and how often it read the body."""
    sent: list[dict[str, Any]] = []
    reads = 0

    async def receive() -> dict[str, Any]:
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": b"x" * 1000, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(gate(scope, receive, send))
    return sent, reads


class App:
    """The service behind the gate: answers 200 after reading the body."""

    def __init__(self, counter: InFlight) -> None:
        self.counter = counter
        self.inside: list[int] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        self.inside.append(self.counter.active)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def _gate(counter: InFlight, refused: list[tuple[int, str]]) -> tuple[UploadGate, App]:
    app = App(counter)
    gate = UploadGate(
        app, 4000, ("/transcribe",), lambda: counter, lambda s, c: refused.append((s, c))
    )
    return gate, app


def test_the_gate_refuses_past_the_limit_without_reading_the_body() -> None:
    counter, refused = InFlight(1), []
    gate, app = _gate(counter, refused)
    counter.active = 1  # as if one were inside
    sent, reads = _call(gate, _scope())
    start, body = sent
    assert start["status"] == 503 and (b"retry-after", b"1") in start["headers"]
    assert json.loads(body["body"])["code"] == "overloaded"
    assert reads == 0 and app.inside == [] and refused == [(503, "overloaded")]
    assert counter.active == 1  # the refusal was never counted


def test_the_gate_counts_an_admitted_request_until_its_answer_starts() -> None:
    counter, refused = InFlight(1), []
    gate, app = _gate(counter, refused)
    sent, reads = _call(gate, _scope())
    assert sent[0]["status"] == 200 and reads == 1
    assert app.inside == [1] and counter.active == 0 and refused == []


def test_the_gate_answers_413_before_reading_and_lets_other_paths_through() -> None:
    counter, refused = InFlight(1), []
    gate, app = _gate(counter, refused)
    sent, reads = _call(gate, _scope(length=10_000))
    assert sent[0]["status"] == 413 and reads == 0 and refused == [(413, "upload_too_large")]
    counter.active = 1  # full: another path is not admitted through the counter at all
    sent, _ = _call(gate, _scope(path="/healthz"))
    assert sent[0]["status"] == 200 and app.inside == [1]
