"""The service's settings: the scope its template arguments name, read once per arguments.

BentoML takes workers, the traffic timeout and the middlewares' limits when the class is
decorated, so the service module asks for its settings at import; `__init__` asks again and
gets the same object (cached per arguments), so the scope file is read once. A test that sets
other arguments before instantiating gets settings of its own.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import bentoml

from data_contracts.scoping import Scope, load_scope
from deployments.arguments import ServiceArguments
from models.cores import available_cores

TRAFFIC_TIMEOUT_S = 30  # a backstop (504); overload is answered sooner with 503


@dataclass(frozen=True)
class ServiceSettings:
    scope: Scope  # rooted at the workspace the arguments name
    model_tag: str  # what the service follows in the BentoML store
    workers: int  # server processes, each its own model and batcher
    torch_threads: int  # intra-op threads of each worker's model thread
    batch_window_ms: float  # how long a batch may wait for clips being decoded
    # Requests past this many in the service get 503 at once instead of queueing behind the
    # batcher. BentoML's own limit (`traffic.max_concurrency`, 429) is left unset.
    max_in_flight: int

    @property
    def max_batch_size(self) -> int:
        return self.scope.serving.max_batch_size

    @property
    def max_latency_ms(self) -> int:
        return self.scope.serving.max_latency_ms

    @property
    def max_upload_bytes(self) -> int:
        return self.scope.audio.max_upload_bytes

    @property
    def audio_dir(self) -> Path:
        """Where consented production audio is kept."""
        return self.scope.state.path("prediction_audio_dir").resolve()

    @property
    def admin_token_file(self) -> Path:
        return self.scope.state.path("admin_token_file").resolve()

    def admin_token(self) -> str | None:
        """The bearer token of POST /admin/reload, read now (None: reload is disabled)."""
        try:
            token = self.admin_token_file.read_text().strip()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return token or None


def default_torch_threads(workers: int, cores: int) -> int:
    """The cores left after one per worker process's event loop, shared by the workers (at
    least one thread each).

    On two shared cores, two torch threads make a batch faster only while nothing else runs:
    OpenMP's threads wait for each other at every step of the GRU, so when the event loop or
    another job takes one core, a batch of 8 took 7x longer (13 vs 88 clips/s in
    bench/serve.py's raw measurement, a training job running beside it).
    """
    return max(1, (cores - 1) // workers)


@functools.lru_cache(maxsize=8)
def load_settings(arguments: ServiceArguments) -> ServiceSettings:
    """Read the scope the arguments name and derive the serving settings from it."""
    scope = load_scope(arguments.scope) if arguments.scope else Scope()
    if arguments.workspace is not None:
        scope = scope.with_workspace(arguments.workspace)
    serving = scope.serving
    cores = available_cores()
    workers = serving.workers or cores
    return ServiceSettings(
        scope=scope,
        model_tag=arguments.model_tag or f"{scope.registry.model_name}:latest",
        workers=workers,
        torch_threads=serving.torch_threads or default_torch_threads(workers, cores),
        batch_window_ms=min(serving.batch_window_ms, serving.max_latency_ms / 4),
        max_in_flight=4 * max(2, serving.max_batch_size),
    )


def current_settings() -> ServiceSettings:
    """The settings of the arguments this process was given (`bentoml serve --arg ...`)."""
    return load_settings(bentoml.use_arguments(ServiceArguments))
