"""With no scheduler in the scope, the fan-out gets a LocalCluster whose worker processes may
start children of their own (synthesis renders each block in a fresh process)."""

from __future__ import annotations

import multiprocessing
import os

import pytest

pytestmark = [pytest.mark.slow]


def _child_pid() -> tuple[int, int]:
    """(this worker's pid, a child process's pid): a daemonic worker could not start one."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        return os.getpid(), pool.apply(os.getpid)


def test_local_cluster_workers_can_start_processes() -> None:
    from distributed import Client

    from tasks.fanout import local_cluster

    with local_cluster(2) as cluster, Client(cluster) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        worker, child = client.submit(_child_pid, pure=False).result(timeout=120)
    assert worker != os.getpid() and child not in (worker, os.getpid())
