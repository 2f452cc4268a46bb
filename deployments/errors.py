"""How the service says no: one error body for every 4xx/503, and the codes it carries.

A refused request gets a JSON `ErrorBody` (`error` in words, a stable `code`, the HTTP
`status`, the `request_id`) and a 4xx status, or 503 with `Retry-After: 1` when the service
is overloaded, not ready or cannot log. The audio codes come from the one decoder
(`models.audio.UnusableAudio`), so the service and the MLflow pyfunc name a bad upload alike.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field
from starlette.responses import JSONResponse

from models.audio import UnusableAudio

# the HTTP status of each decoder code (models.audio.decode_audio)
AUDIO_STATUS: dict[str, int] = {
    "empty_upload": 400,
    "undecodable_audio": 415,
    "bad_sample_rate": 400,
    "bad_channels": 400,
    "audio_too_long": 413,
    "audio_too_short": 400,
    "non_finite_samples": 400,
}

# every status POST /transcribe answers with an ErrorBody, and the codes it may carry
TRANSCRIBE_ERRORS: dict[int, tuple[str, ...]] = {
    400: (
        "empty_upload",
        "bad_sample_rate",
        "bad_channels",
        "audio_too_short",
        "non_finite_samples",
        "bad_client_json",
        "bad_form",
    ),
    413: ("upload_too_large", "audio_too_long"),
    415: ("undecodable_audio",),
    503: ("overloaded", "not_ready", "shutting_down", "log_unavailable"),
}
RELOAD_ERRORS: dict[int, tuple[str, ...]] = {
    400: ("bad_form",),
    403: ("admin_disabled", "forbidden"),
    500: ("reload_failed",),
}


class ErrorBody(BaseModel):
    """The body of every refused request."""

    error: str = Field(description="what is wrong, in words")
    code: str = Field(description="a stable name of the problem, e.g. 'audio_too_long'")
    status: int = Field(description="the HTTP status it was answered with")
    request_id: str | None = Field(None, description="the request's id, where it had one")


class Rejected(Exception):
    """A request answered with a 4xx/503 and an ErrorBody naming the problem."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"Rejected({self.status}, {self.code!r}, {self.message!r})"

    def body(self, request_id: str | None = None) -> ErrorBody:
        return ErrorBody(
            error=self.message, code=self.code, status=self.status, request_id=request_id
        )


def as_rejected(exc: Rejected | UnusableAudio) -> Rejected:
    """A refusal as the service answers it (the decoder's codes get their HTTP status)."""
    if isinstance(exc, Rejected):
        return exc
    return Rejected(AUDIO_STATUS.get(exc.code, 400), exc.code, exc.message)


def retry_headers(status: int) -> dict[str, str]:
    """Headers that go with a refusal: overload and unavailability invite a retry."""
    return {"Retry-After": "1"} if status == 503 else {}


def error_response(body: ErrorBody) -> JSONResponse:
    """An ErrorBody as a Starlette response (for the ASGI layers in front of the APIs)."""
    return JSONResponse(
        body.model_dump(mode="json"), status_code=body.status, headers=retry_headers(body.status)
    )


# the codes of the errors BentoML answers itself (before or around an API), by status
BENTOML_CODES = {400: "bad_form", 404: "not_found", 500: "internal_error"}


def _words(detail: Any) -> str:
    """BentoML's `detail` (pydantic's error list, or a string) as one line naming the fields."""
    if isinstance(detail, list):
        return "; ".join(
            f"{'.'.join(str(part) for part in item.get('loc', ()))}: {item.get('msg', item)}"
            if isinstance(item, dict)
            else str(item)
            for item in detail
        )
    return str(detail)


class UniformErrors:
    """ASGI middleware: an error BentoML answers itself as `{error, detail}` (a malformed form,
    a missing field) is re-answered as an ErrorBody, so every refusal of the service has the
    one declared shape; and a form that Starlette cannot parse, which BentoML answers 500, is
    answered 400 `bad_form` with Starlette's reason. Successful answers pass through
    unbuffered; a form body is kept (up to `keep_bytes`) only to name that reason."""

    def __init__(self, app: Any, keep_bytes: int = 8 * 1024 * 1024) -> None:
        self.app = app
        self.keep_bytes = keep_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        form = headers.get(b"content-type", b"").startswith(b"multipart/form-data")
        kept: list[bytes] | None = [] if form else None
        held: list[dict[str, Any]] = []

        async def keeping() -> dict[str, Any]:
            nonlocal kept
            message: dict[str, Any] = await receive()
            if kept is not None and message["type"] == "http.request":
                kept.append(message.get("body", b""))
                if sum(len(chunk) for chunk in kept) > self.keep_bytes:
                    kept = None
            return message

        async def relay(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                types = dict(message.get("headers") or []).get(b"content-type", b"")
                if message["status"] not in BENTOML_CODES or not types.startswith(
                    b"application/json"
                ):
                    await send(message)
                    return
            elif not held:
                await send(message)
                return
            held.append(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                await self._rewrite(held, kept, scope, send)

        await self.app(scope, keeping if form else receive, relay)

    async def _rewrite(
        self,
        messages: list[dict[str, Any]],
        kept: list[bytes] | None,
        scope: dict[str, Any],
        send: Any,
    ) -> None:
        start, status = messages[0], messages[0]["status"]
        try:
            body = json.loads(b"".join(m.get("body", b"") for m in messages[1:]))
        except ValueError:
            body = None
        if not isinstance(body, dict) or "code" in body or "error" not in body:
            for message in messages:
                await send(message)
            return
        error, code = str(body["error"]), BENTOML_CODES[status]
        if body.get("detail"):
            error = f"{error}: {_words(body['detail'])}"
        if status == 500 and kept is not None:
            malformed = await form_problem(scope, b"".join(kept))
            if malformed:
                error, code, status = f"malformed multipart form: {malformed}", "bad_form", 400
        request_id = dict(start.get("headers") or []).get(b"x-bentoml-request-id")
        rewritten = ErrorBody(
            error=error,
            code=code,
            status=status,
            request_id=request_id.decode("latin-1") if request_id else None,
        )
        response = error_response(rewritten)
        for name, value in start.get("headers") or []:
            if name.lower() not in (b"content-length", b"content-type"):
                response.headers.append(name.decode("latin-1"), value.decode("latin-1"))
        await response(scope, _no_body, send)


async def _no_body() -> dict[str, Any]:
    return {"type": "http.disconnect"}


async def form_problem(scope: dict[str, Any], body: bytes) -> str | None:
    """Why Starlette (what BentoML parses forms with) refuses this multipart body, or None."""
    from starlette.exceptions import HTTPException
    from starlette.formparsers import MultiPartException
    from starlette.requests import Request

    sent = False

    async def once() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(scope, once).form()
        await form.close()
    except (HTTPException, MultiPartException) as exc:
        return str(getattr(exc, "detail", None) or exc)
    except Exception as exc:  # any other parse failure is the form's too
        return f"{type(exc).__name__}: {exc}"
    return None
