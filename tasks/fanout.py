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
    """The Prefect task runner named by scope.runtime (processes, threads or dask).

    Tasks that already do their work in fresh child processes (synthesis renders each block in
    one, for espeak's sake) say `tasks_start_processes`: on "processes" they get a thread pool,
    which spreads them over the cores just as well without starting (and importing into) a
    second layer of processes. On "dask" every task goes to the cluster: the shards' inputs
    and outputs are paths every worker reaches (the workspace), never a worker's memory.
    """
    workers = max_workers(scope)
    if scope.runtime.task_runner == "dask":
        return dask_runner(scope.state.address("dask_scheduler"), workers)
    if scope.runtime.task_runner == "processes" and not tasks_start_processes:
        return ProcessPoolTaskRunner(max_workers=workers)
    return ThreadPoolTaskRunner(max_workers=workers)


def dask_runner(address: str | None, workers: int) -> TaskRunner[Any]:
    """prefect-dask's DaskTaskRunner on the scheduler at `address`; with none, a LocalCluster
    of `workers` single-threaded, non-daemonic worker processes (synthesis starts children),
    on 127.0.0.1, that lives as long as the flow run that uses it."""
    from prefect_dask import DaskTaskRunner

    if address:
        return DaskTaskRunner(address=address)
    # prefect-dask calls cluster_class(**cluster_kwargs); its annotation says no arguments
    return DaskTaskRunner(
        cluster_class=local_cluster,  # type: ignore[arg-type]
        cluster_kwargs={"n_workers": workers},
    )


def local_cluster(n_workers: int) -> Any:
    """A distributed.LocalCluster on 127.0.0.1: single-threaded worker processes that may start
    children (a daemonic one may not, and synthesis renders blocks in fresh processes)."""
    import dask
    from distributed import LocalCluster

    with dask.config.set({"distributed.worker.daemon": False}):
        return LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        )


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
