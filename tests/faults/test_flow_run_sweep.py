"""The sweep's reading of a flow run's process (deployments/flow_runs.py): which runs are this
machine's, and when their process is gone (dead, or its pid reused by a later process)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import psutil
import pytest

from deployments.flow_runs import process_gone, run_process

HOST = socket.gethostname()


@pytest.mark.parametrize(
    ("infrastructure_pid", "pool", "expected"),
    [
        (f"{HOST}:123", None, 123),  # recorded by the flow itself
        ("another-host:123", None, None),  # another machine's run: never judged here
        ("123", "voicecycle-local", 123),  # the local process worker's child
        ("123", "a-team-pool", None),  # a bare pid from a pool this machine does not run
        (None, "voicecycle-local", None),  # no process named: left alone
        ("", None, None),
        (f"{HOST}:not-a-pid", None, None),
    ],
)
def test_a_run_names_its_process_on_this_machine_or_is_left_alone(
    infrastructure_pid: str | None, pool: str | None, expected: int | None
) -> None:
    assert run_process(infrastructure_pid, pool, "voicecycle-local", HOST) == expected


def test_a_live_process_is_not_gone_a_dead_or_reused_pid_is() -> None:
    me = psutil.Process(os.getpid())
    began = datetime.fromtimestamp(me.create_time(), UTC)
    assert not process_gone(os.getpid(), began + timedelta(seconds=1))
    assert not process_gone(os.getpid(), None)
    # this process started long after a run that names its pid: the pid was reused
    assert process_gone(os.getpid(), began - timedelta(hours=1))
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert process_gone(child.pid, began)


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_server")
def test_the_sweep_crashes_a_running_run_whose_process_is_gone_and_keeps_a_live_one() -> None:
    from prefect import flow, task
    from prefect.client.orchestration import get_client
    from prefect.settings import get_current_settings
    from prefect.states import Running

    from deployments.flow_runs import crash_orphans

    @task(name="sweep-probe-task")
    def probe_task() -> None:
        pass

    @flow(name="sweep-probe")
    def probe() -> None:
        pass

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    owners = {"dead": f"{HOST}:{child.pid}", "alive": f"{HOST}:{os.getpid()}",
              "elsewhere": "another-host:1"}  # fmt: skip
    with get_client(sync_client=True) as client:
        ids = {}
        for name, owner in owners.items():
            run = client.create_flow_run(probe, name=f"sweep-{name}", state=Running())
            client.update_flow_run(run.id, infrastructure_pid=owner)
            ids[name] = run.id
        # a subflow that names no process, inside the dead run (as ingest's corpus subflow)
        task_run = client.create_task_run(probe_task, ids["dead"], "sub-0")
        sub = client.create_flow_run(probe, name="sweep-sub", parent_task_run_id=task_run.id,
                                     state=Running())  # fmt: skip
        ids["subflow"] = sub.id
        swept = crash_orphans(str(get_current_settings().api.url), "voicecycle-local")
        states = {name: client.read_flow_run(i).state for name, i in ids.items()}
    ours = {str(i) for i in ids.values()}
    assert {o.run_id for o in swept if o.run_id in ours} == {str(ids["dead"]), str(ids["subflow"])}
    assert states["subflow"] is not None and states["subflow"].type.value == "CRASHED"
    assert f"parent flow run {ids['dead']} is gone" in str(states["subflow"].message)
    assert states["dead"] is not None and states["dead"].type.value == "CRASHED"
    assert "is gone" in str(states["dead"].message)
    assert {states[n].type.value for n in ("alive", "elsewhere")} == {"RUNNING"}  # type: ignore[union-attr]
