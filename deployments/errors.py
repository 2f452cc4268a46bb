"""How the service says no: one error body for every 4xx/503, and the codes it carries.

A refused request gets a JSON `ErrorBody` (`error` in words, a stable `code`, the HTTP
`status`, the `request_id`) and a 4xx status, or 503 with `Retry-After: 1` when the service
is overloaded, not ready or cannot log. The audio codes come from the one decoder
(`models.audio.UnusableAudio`), so the service and the MLflow pyfunc name a bad upload alike.
"""

from __future__ import annotations

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
        "bad_scenario",
        "bad_reference",
    ),
    413: ("upload_too_large", "audio_too_long"),
    415: ("undecodable_audio",),
    503: ("overloaded", "not_ready", "shutting_down", "log_unavailable"),
}
RELOAD_ERRORS: dict[int, tuple[str, ...]] = {
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
