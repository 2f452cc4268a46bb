"""Monitoring's decision steps without a server: below the minimum window no drift check
runs and the decision says so; the cooldown state lives in state.monitoring_dir."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from data_contracts.scoping import MonitoringScope, Scope
from tasks.monitoring import (
    drift_check,
    drift_decision,
    last_trigger,
    monitor_summary,
    record_trigger,
    reset_cooldown,
)
from tasks.retraining import RetrainPlan


def test_a_window_below_the_minimum_is_not_checked_and_gives_no_decision(tmp_path: Path) -> None:
    settings = MonitoringScope(min_window=100)
    small = pd.DataFrame({"transcript": ["play jazz"] * 5})  # too few rows to look at
    result = drift_check.fn(pd.DataFrame(), small, {"play"}, tmp_path / "r.html", settings)
    assert not result.evaluated and result.n_current == 5 and result.html_path is None
    assert not (tmp_path / "r.html").exists()
    decision = drift_decision.fn(result, settings, tmp_path / "monitoring")
    assert not decision.drift and not decision.retrain
    assert "below the minimum of 100" in decision.reason
    labels = {"labels_ready": False, "labels_reason": "no new labels", "pending_labels": 0}
    summary = monitor_summary.fn(result, decision, None, labels)
    assert summary == {
        "model_version": None,
        "labelled_wer": None,
        "drift": False,
        "reason": decision.reason,
        "drift_share": 0.0,
        "drifted": [],
        "window": 5,
        "labelling_batch": None,
        "retrain": False,
        "retrain_flow_run": None,
        "labels_ready": False,
        "labels_reason": "no new labels",
        "pending_labels": 0,
    }


def test_cooldown_state_is_kept_in_the_monitoring_dir(tmp_path: Path) -> None:
    monitoring_dir = Scope().with_workspace(tmp_path).state.path("monitoring_dir")
    assert last_trigger(monitoring_dir) is None and reset_cooldown.fn(monitoring_dir) is False
    record_trigger(monitoring_dir, "drift")
    assert last_trigger(monitoring_dir) is not None
    assert (monitoring_dir / "state.json").is_file()
    assert reset_cooldown.fn(monitoring_dir) is True
    assert last_trigger(monitoring_dir) is None


def test_retrain_plan_warm_starts_only_when_the_scope_says() -> None:
    scope = Scope()
    assert RetrainPlan(scope, (), "3").warm_start_from == "3"
    cold = scope.model_copy(
        update={"training": scope.training.model_copy(update={"warm_start": False})}
    )
    assert RetrainPlan(cold, (), "3").warm_start_from is None
    assert RetrainPlan(scope, (), None).warm_start_from is None
