"""Monitor: prediction-log window vs the champion's reference -> Evidently drift report ->
decision (drift share, minimum window, cooldown) -> event and the retrain deployment."""

from __future__ import annotations

from prefect import flow

from data_contracts.scoping import Scope
from tasks.dashboard import record_check
from tasks.monitoring import (
    champion_reference,
    drift_check,
    drift_decision,
    monitor_summary,
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
    result = drift_check(reference, current, lexicon, reports / "drift_report.html", mon)
    decision = drift_decision(result, mon, st.path("monitoring_dir"))
    publish_drift(result, decision, version, scope.registry.experiment)
    record_check(st.path("evidently_workspace"), result, version, current, lexicon)
    run_id = trigger_retrain(decision.reason, scope) if decision.retrain and trigger else None
    return monitor_summary(result, decision, run_id)
