"""The OpenAPI schema says what a refusal looks like: every 4xx/503 an API answers, with
its `ErrorBody`; and where people find the docs (`/docs`) and the voice-search page (`/`).

BentoML 1.4 documents an API's 200 answer from its output type and a fixed set of its own
errors; it has no way to declare an API's other responses. This ASGI middleware adds them to
`GET /docs.json` as BentoML generated it: the `ErrorBody` schema and, per route, each status
with the codes it may carry.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from starlette.responses import FileResponse, JSONResponse

from deployments.errors import ErrorBody

SPEC_PATH = "/docs.json"
DOCS_PATH = "/docs"
PAGE = Path(__file__).resolve().parent / "static" / "index.html"
REF = "#/components/schemas/{model}"
# BentoML checks the form before the API runs; errors.UniformErrors re-answers its refusal
BENTOML_400 = " (bad_form: a malformed form or a missing field)"


def add_error_responses(
    spec: dict[str, Any], errors: dict[str, dict[int, tuple[str, ...]]]
) -> dict[str, Any]:
    """`spec` with the ErrorBody schema and, for each route, its error statuses and codes."""
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas["ErrorBody"] = ErrorBody.model_json_schema(ref_template=REF)
    for route, statuses in errors.items():
        for operation in spec.get("paths", {}).get(route, {}).values():
            responses = operation.setdefault("responses", {})
            for status, codes in statuses.items():
                note = BENTOML_400 if status == 400 else ""
                responses[str(status)] = {
                    "description": "refused; code one of: " + ", ".join(codes) + note,
                    "content": {
                        "application/json": {"schema": {"$ref": REF.format(model="ErrorBody")}}
                    },
                }
    return spec


class DocumentedErrors:
    """ASGI middleware: patch the error responses into BentoML's `GET /docs.json`."""

    def __init__(self, app: Any, errors: dict[str, dict[int, tuple[str, ...]]]) -> None:
        self.app = app
        self.errors = errors

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != SPEC_PATH or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        messages: list[dict[str, Any]] = []

        async def capture(message: dict[str, Any]) -> None:
            messages.append(message)

        await self.app(scope, receive, capture)
        if not messages or messages[0].get("status") != 200:
            for message in messages:  # an error of BentoML's own: pass it on as it came
                await send(message)
            return
        body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
        response = JSONResponse(add_error_responses(json.loads(body), self.errors))
        await response(scope, receive, send)


class PageAndDocs:
    """ASGI middleware: the voice-search page at `/`, BentoML's Swagger UI (which it serves
    at `/`) moved to `/docs`. The Swagger page loads `./static_content/...` and
    `./docs.json`, which resolve from `/docs` to the same places as from `/`."""

    def __init__(self, app: Any, page: Path = PAGE) -> None:
        self.app = app
        self.page = page

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            if scope["path"] == "/":
                await FileResponse(self.page, media_type="text/html")(scope, receive, send)
                return
            if scope["path"] in (DOCS_PATH, DOCS_PATH + "/"):
                scope = {**scope, "path": "/", "raw_path": b"/"}
        await self.app(scope, receive, send)
