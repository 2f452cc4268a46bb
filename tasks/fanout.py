"""Fan-out over shards through Prefect task runners, chosen by the scope.

A flow that maps a task over shards runs that mapping in a subflow whose task runner comes
from `task_runner(scope)`, so the Prefect UI shows one task run per shard and a distributed
runner (prefect-dask's DaskTaskRunner) can take the shards over by configuration alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner, ThreadPoolTaskRunner

from data_contracts.scoping import Scope
from models.cores import available_cores

T = TypeVar("T")


def max_workers(scope: Scope) -> int:
    """Workers the fan-out may use: the scope's runtime.max_workers, else one per core."""
    return scope.runtime.max_workers or available_cores()


def task_runner(scope: Scope, *, tasks_start_processes: bool = False) -> TaskRunner[Any]:
    """The Prefect task runner named by scope.runtime (processes or threads).

    Tasks that already do their work in fresh child processes (synthesis renders each block in
    one, for espeak's sake) say `tasks_start_processes`: on "processes" they get a thread pool,
    which spreads them over the cores just as well without starting (and importing into) a
    second layer of processes.
    """
    workers = max_workers(scope)
    if scope.runtime.task_runner == "processes" and not tasks_start_processes:
        return ProcessPoolTaskRunner(max_workers=workers)
    return ThreadPoolTaskRunner(max_workers=workers)


def shards(items: Sequence[T], n: int) -> list[list[T]]:
    """Cut items into at most n contiguous, near-equal, non-empty shards (order kept)."""
    if n < 1:
        raise ValueError(f"shards: expected n >= 1, got {n}")
    items = list(items)
    n = min(n, len(items))
    if n == 0:
        return []
    size, extra = divmod(len(items), n)
    out: list[list[T]] = []
    start = 0
    for i in range(n):
        stop = start + size + (1 if i < extra else 0)
        out.append(items[start:stop])
        start = stop
    return out
