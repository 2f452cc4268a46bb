"""The Prefect process worker `kill -9`ed with its flow-run process while a retrain deployment
run trains (bench/kills.py, which `bench faults` runs too): at the next `server start` the
run ends Crashed with why (no run stays Running), nothing is half-registered, the champion
is unchanged, the dead trainer's MLflow run is marked KILLED by the rerun's start, and a
manual `voicecycle retrain --wait` completes."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.kills import worker_kill_during_retrain

pytestmark = pytest.mark.slow


# two retrains and two server starts: 438 s under CI's load (five test processes on two cores)
@pytest.mark.timeout(1200)
def test_a_killed_worker_leaves_a_crashed_run_and_a_rerun_completes(tmp_path: Path) -> None:
    outcome = worker_kill_during_retrain(tmp_path, timeout_s=600)
    assert outcome["killed_mid_training"], outcome  # the kill landed while the run trained
    assert outcome["processes_killed"] >= 2, outcome  # the worker and its flow-run process
    assert outcome["open_runs_after_restart"] == [], outcome
    names = {r["name"] for r in outcome["crashed_runs"]}
    assert len(names) >= 2, outcome  # the retrain run and the train subflow it was in
    assert all("is gone" in r["message"] for r in outcome["crashed_runs"]), outcome
    after_kill = outcome["registry_after_kill"]
    assert after_kill["champion"] == outcome["champion_before"], outcome
    assert after_kill["versions_without_metrics"] == [], outcome
    assert outcome["partial_versions"] == 0, outcome
    assert outcome["rerun_exit"] == 0, outcome
    after_rerun = outcome["registry_after_rerun"]
    assert after_rerun["mlflow_running"] == [], outcome  # the killed trainer's run ended
    assert after_rerun["versions"] and after_rerun["versions_without_metrics"] == [], outcome
    assert outcome["open_runs_at_end"] == [], outcome
