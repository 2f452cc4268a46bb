"""The drift trigger reaches the retrain deployment, with the reason, and starts the cooldown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from data_contracts.scoping import Scope

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_server")]


def test_trigger_runs_the_retrain_deployment_and_records_the_cooldown(tmp_path: Path) -> None:
    from prefect import Flow
    from prefect.client.orchestration import get_client

    from deployments.local import REPO_ROOT, WORK_POOL
    from deployments.work_pool import ensure_work_pool
    from tasks.monitoring import last_trigger, trigger_retrain

    ensure_work_pool()
    flow: Any = Flow.from_source(source=str(REPO_ROOT), entrypoint="flows/retrain.py:retrain")
    deployment_id = flow.deploy(
        name="retrain", work_pool_name=WORK_POOL, print_next_steps=False, ignore_warnings=True
    )
    scope = Scope().with_workspace(tmp_path)
    monitoring_dir = scope.state.path("monitoring_dir")
    assert last_trigger(monitoring_dir) is None

    run_id = trigger_retrain.fn("drift share 0.45 >= 0.3", scope)

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)  # type: ignore[arg-type]
    assert run.deployment_id == deployment_id
    assert run.parameters["reason"] == "drift share 0.45 >= 0.3"
    assert run.parameters["scope"]["state"]["workspace"] == str(tmp_path.resolve())
    assert last_trigger(monitoring_dir) is not None  # the cooldown counts from now


def test_trigger_without_a_deployment_says_what_to_do(tmp_path: Path) -> None:
    from tasks.monitoring import last_trigger, trigger_retrain

    scope = Scope().with_workspace(tmp_path)
    with pytest.raises(RuntimeError, match="voicecycle deploy"):
        trigger_retrain.fn("drift", scope, deployment="retrain/never-registered")
    assert last_trigger(scope.state.path("monitoring_dir")) is None  # nothing started
