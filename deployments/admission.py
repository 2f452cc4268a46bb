"""Admission control: how many requests the service takes in, and how large an upload.

One counter (`InFlight`) holds the /transcribe requests inside a service process. Over HTTP,
`UploadGate` counts a request before its body is read, so overload is answered 503 in about a
millisecond instead of after parsing an upload behind the others, and an upload over the
limit is answered 413 before it is read. The handler admits through the same counter; a
request the gate already counted is not counted twice, and a direct call of the class (no
gate) is counted by the handler.
"""

from __future__ import annotations

import secrets
import threading
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from deployments.errors import ErrorBody, Rejected, error_response

MULTIPART_SLACK_BYTES = 64 * 1024  # boundaries and the small form fields around the audio

_GATE_COUNTED: ContextVar[bool] = ContextVar("voicecycle_gate_counted", default=False)


class InFlight:
    """The requests inside the service now, against a limit (the one admission counter)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0
        self._lock = threading.Lock()

    def try_enter(self) -> bool:
        """Count one more request unless the limit is reached; whether it was counted."""
        with self._lock:
            if self.active >= self.limit:
                return False
            self.active += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self.active -= 1

    def refusal(self) -> Rejected:
        return Rejected(503, "overloaded", f"over {self.limit} requests in the service; retry")

    def admit(self) -> bool:
        """For the handler: admit this request (Rejected 503 when full). True when the
        handler counted it and must `leave()`; False when the gate had counted it already."""
        if _GATE_COUNTED.get():
            return False
        if not self.try_enter():
            raise self.refusal()
        return True


class UploadGate:
    """ASGI middleware in front of the upload paths: 503 past the in-flight limit and 413
    over the upload limit, both before the body is read. `in_flight` gives the counter of
    the service instance serving now."""

    def __init__(
        self,
        app: Any,
        max_bytes: int,
        paths: tuple[str, ...],
        in_flight: Callable[[], InFlight],
        refused: Callable[[int, str], None] = lambda status, code: None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.paths = paths
        self.in_flight = in_flight
        self.refused = refused  # told (status, code) of each refusal here (the metrics)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        counter = self.in_flight()
        if not counter.try_enter():
            refusal = counter.refusal()
            self.refused(refusal.status, refusal.code)
            response = error_response(refusal.body(uuid.uuid4().hex))
            await response(scope, receive, send)
            return
        inside = True

        async def send_and_count(message: dict[str, Any]) -> None:
            nonlocal inside
            if inside and message["type"] == "http.response.start":
                inside = False  # out before the client can see the answer and send again
                counter.leave()
            await send(message)

        token = _GATE_COUNTED.set(True)
        try:
            await self._limited(scope, receive, send_and_count)
        finally:
            _GATE_COUNTED.reset(token)
            if inside:
                counter.leave()

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
        body = ErrorBody(
            error=f"upload of {size} bytes or more exceeds the limit of "
            f"{self.max_bytes - MULTIPART_SLACK_BYTES} bytes of audio",
            code="upload_too_large",
            status=413,
        )
        self.refused(body.status, body.code)
        await error_response(body)(scope, receive, send)


def bearer_matches(header: str, token: str) -> bool:
    """Whether an Authorization header is `Bearer <token>` (compared in constant time)."""
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and secrets.compare_digest(
        given.strip().encode(), token.encode()
    )
