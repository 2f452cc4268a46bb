"""tasks.fanout: the scope chooses the task runner; shards cut lists evenly and in order."""

from __future__ import annotations

import pytest
from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

from data_contracts.scoping import Scope
from models.cores import available_cores
from tasks.fanout import max_workers, shards, task_runner


def test_runner_follows_the_scope() -> None:
    scope = Scope()
    assert isinstance(task_runner(scope), ProcessPoolTaskRunner)
    # tasks that start their own fresh processes are driven by threads, not a second layer
    assert isinstance(task_runner(scope, tasks_start_processes=True), ThreadPoolTaskRunner)
    assert max_workers(scope) == available_cores()
    threads = scope.model_copy(
        update={
            "runtime": scope.runtime.model_copy(update={"task_runner": "threads", "max_workers": 3})
        }
    )
    runner = task_runner(threads)
    assert isinstance(runner, ThreadPoolTaskRunner)
    assert max_workers(threads) == 3


def test_dask_runner_uses_the_scopes_scheduler_or_a_local_cluster() -> None:
    from prefect_dask import DaskTaskRunner

    from tasks.fanout import local_cluster

    scope = Scope()
    dask = scope.model_copy(
        update={
            "runtime": scope.runtime.model_copy(update={"task_runner": "dask", "max_workers": 2})
        }
    )
    local = task_runner(dask)
    assert isinstance(local, DaskTaskRunner)
    assert local.address is None
    assert local.cluster_class is local_cluster
    assert local.cluster_kwargs == {"n_workers": 2}
    # synthesis (which starts processes of its own) goes to the cluster too
    assert isinstance(task_runner(dask, tasks_start_processes=True), DaskTaskRunner)
    remote = dask.model_copy(
        update={"state": dask.state.model_copy(update={"dask_scheduler": "tcp://10.0.0.5:8786"})}
    )
    runner = task_runner(remote)
    assert isinstance(runner, DaskTaskRunner)
    assert runner.address == "tcp://10.0.0.5:8786"


@pytest.mark.parametrize(
    ("n_items", "n", "sizes"),
    [(7, 3, [3, 2, 2]), (0, 2, []), (1, 4, [1]), (4, 4, [1, 1, 1, 1]), (5, 1, [5])],
)
def test_shards_are_contiguous_and_near_equal(n_items: int, n: int, sizes: list[int]) -> None:
    items = list(range(n_items))
    cut = shards(items, n)
    assert [len(s) for s in cut] == sizes
    assert [x for s in cut for x in s] == items


def test_shards_reject_zero() -> None:
    with pytest.raises(ValueError, match="n >= 1"):
        shards([1, 2], 0)
