"""Monitor: prediction-log window vs the champion's reference -> Evidently drift report ->
decision (drift share, minimum window, cooldown) -> event and the retrain deployment."""

from __future__ import annotations

from prefect import flow

from data_contracts.scoping import Scope
from tasks.monitoring import (
    champion_reference,
    drift_check,
    drift_decision,
    publish_drift,
    read_window,
    trigger_retrain,
)
from tasks.registry import CHAMPION, configure_mlflow
from tasks.scoping import validate_scope


@flow(name="monitor", log_prints=True)
def monitor(scope: Scope, trigger: bool = True) -> dict[str, object]:
    """Check the recent production window for drift; start a retrain when the rule says so."""
    validate_scope(scope)
    st, mon = scope.state, scope.monitoring
    configure_mlflow(
        st.url("mlflow_tracking_uri"), scope.registry.experiment, st.path("mlflow_artifacts")
    )
    current = read_window(st.url("prediction_log_url"), mon.window)
    reports = st.path("reports_dir") / "drift"
    reference, lexicon, version = champion_reference(
        scope.registry.model_name, CHAMPION, reports / "reference"
    )
    if len(current) < mon.min_window:
        print(f"only {len(current)} predictions logged; the minimum window is {mon.min_window}")
        return {
            "drift": False,
            "retrain": False,
            "window": len(current),
            "reason": f"window {len(current)} < min_window {mon.min_window}",
        }
    result = drift_check(reference, current, lexicon, reports / "drift_report.html", mon)
    decision = drift_decision(result, mon, st.workspace)
    publish_drift(result, decision, version, scope.registry.experiment)
    run_id = None
    scope_payload = scope.with_workspace(st.workspace.resolve()).model_dump(mode="json")
    if decision.retrain and trigger:
        run_id = trigger_retrain(decision.reason, scope_payload, st.workspace)
    return {
        "drift": decision.drift,
        "retrain": decision.retrain,
        "reason": decision.reason,
        "drift_share": result.drift_share,
        "drifted": list(result.drifted_columns),
        "window": len(current),
        "retrain_flow_run": run_id,
    }
