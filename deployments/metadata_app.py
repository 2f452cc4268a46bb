"""Routes BentoML's (POST) APIs cannot express, mounted beside them: `GET /metadata` and the
voice-search page's static files under `/ui/` (the page itself is `/`: deployments/openapi.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bentoml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from deployments.served_model import ServedModel
from deployments.settings import TRAFFIC_TIMEOUT_S, ServiceSettings

STATIC_DIR = Path(__file__).resolve().parent / "static"


def service_metadata(
    served: ServedModel | None, settings: ServiceSettings, batching: dict[str, Any]
) -> dict[str, Any]:
    """Model lineage, the scope's targets and the serving settings of one service process."""
    meta = served.metadata if served else {}
    scope = settings.scope
    return {
        "service": "VoiceSearchASR",
        "ready": served is not None,
        "model_tag": served.tag if served else None,
        "model_version": served.version if served else None,
        "model_name": meta.get("model_name"),
        "dataset_version": meta.get("dataset_version"),
        "metrics": meta.get("metrics", {}),
        "loaded_at": served.loaded_at.isoformat() if served else None,
        "hot_words_version": served.hot_words_version if served else None,
        "hot_words": list(served.hot_words.phrases) if served and served.hot_words else [],
        "requested_tag": settings.model_tag,
        "targets": scope.targets.model_dump(mode="json"),
        "serving": scope.serving.model_dump(mode="json"),
        "audio": scope.audio.model_dump(mode="json"),
        "batching": {
            "max_batch_size": settings.max_batch_size,
            "max_latency_ms": settings.max_latency_ms,
            "batch_window_ms": settings.batch_window_ms,
            **batching,
        },
        "limits": {"max_in_flight": settings.max_in_flight, "timeout_s": TRAFFIC_TIMEOUT_S},
        "torch_threads": settings.torch_threads,
        "workers": settings.workers,
    }


async def _metadata(_: Request) -> JSONResponse:
    return JSONResponse(bentoml.get_current_service().metadata())


metadata_app = Starlette(
    routes=[
        Route("/metadata", _metadata, methods=["GET"]),
        Mount("/ui", StaticFiles(directory=STATIC_DIR), name="ui"),
    ]
)
