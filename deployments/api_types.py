"""The service's request fields and answers: what the OpenAPI schema shows, checked here."""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator

from deployments.errors import Rejected

MAX_CLIENT_CHARS = 4096


def _as_text(value: Any) -> Any:
    """Undo BentoML's JSON-decoding of multipart form fields: '{"a": 1}' arrives as a dict."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict | list | bool | int | float):
        return json.dumps(value, sort_keys=True)
    return value


FormText = Annotated[str, BeforeValidator(_as_text)]


class Transcript(BaseModel):
    """The answer to one voice query."""

    transcript: str
    confidence: float
    duration_s: float
    model_version: str
    request_id: str
    latency_ms: float


class ReloadResult(BaseModel):
    """What POST /admin/reload did."""

    reloaded: bool
    previous_tag: str | None
    model_tag: str | None
    model_version: str | None


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


def check_upload_size(size: int, limit: int) -> None:
    """Refuse an upload over the limit (Rejected 413 upload_too_large)."""
    if size > limit:
        raise Rejected(
            413, "upload_too_large", f"upload of {size} bytes exceeds the limit of {limit} bytes"
        )
