"""The Prefect server SIGKILLed while `voicecycle ingest` runs on it (bench/kills.py, which
`bench faults` runs with Prefect's default client retries): the command ends with one
message and a non-zero exit, no dataset version is half-published (publishing is a rename of
a finished staging folder), once the server is back the run the kill left Running ends
Crashed (the sweep at `server start`), and a rerun completes."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.kills import prefect_server_kill

pytestmark = pytest.mark.slow


def test_a_killed_prefect_server_leaves_no_partial_version_and_a_rerun_completes(
    tmp_path: Path,
) -> None:
    # A few client retries (seconds, not Prefect's minutes): with none, one slow answer from
    # a server on a busy machine ends ingest before the kill lands.
    outcome = prefect_server_kill(tmp_path, timeout_s=600, client_retries=3)
    after = outcome["after_kill"]
    assert not after["ended_before_kill"], outcome  # the kill landed while ingest worked
    assert after["exit"] != 0, outcome  # the run did not end as if nothing happened
    assert "Traceback" not in after["last_line"], outcome
    assert after["partial"] == [] and outcome["partial_versions"] == 0, outcome
    assert outcome["rerun_exit"] == 0, outcome
    assert outcome["rerun_version"] is not None, outcome  # the rerun published a version
    assert set(after["versions"]) <= {outcome["rerun_version"]}, outcome
    # the run the kill left Running ends Crashed, with why, when the server is back
    assert outcome["open_runs_after_restart"] == [], outcome
    crashed = outcome["crashed_after_restart"]  # the ingest run and its corpus subflow
    (top,) = [run for run in crashed if run["parent_task_run_id"] is None]
    assert all("is gone" in run["message"] for run in crashed), outcome
    assert any(top["id"] in line for line in outcome["sweep_said"]), outcome
