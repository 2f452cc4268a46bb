"""Monitor: prediction-log window vs the champion's reference -> Evidently drift report ->
decision (drift share, minimum window, cooldown) -> drift opens a labelling batch; on every
run, the labels that came in (pulled from Label Studio when one is set) -> the retrain
deployment once enough are in (labelling.min_labels / min_share / timeout_minutes)."""

from __future__ import annotations

from prefect import flow

from data_contracts.scoping import Scope
from flows.label import open_batch
from tasks.dashboard import labelled_production_wer, record_check
from tasks.monitoring import (
    champion_reference,
    drift_check,
    drift_decision,
    import_labelled,
    monitor_summary,
    publish_drift,
    read_window,
    retrain_when_labelled,
    served_reference,
)
from tasks.registry import CHAMPION, configure_mlflow
from tasks.scoping import validate_scope


@flow(name="monitor", log_prints=True)
def monitor(scope: Scope, trigger: bool = True) -> dict[str, object]:
    """Check the recent production window for drift (drift opens a labelling batch); start
    the retrain when the labels are in. `trigger=False` only reports."""
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
    # a retrained champion's reference: the first full window it served (tasks/monitoring.py)
    reference = served_reference(
        scope.registry.model_name,
        version,
        reference,
        current,
        st.path("monitoring_dir"),
        mon.window,
    )
    result = drift_check(reference, current, lexicon, reports / "drift_report.html", mon)
    decision = drift_decision(result, mon, st.path("monitoring_dir"))
    publish_drift(result, decision, version, scope.registry.experiment)
    opened = open_batch(scope, current, decision.reason) if decision.retrain and trigger else None
    if trigger and scope.labelling.label_studio_url:
        labels = import_labelled(scope)  # pulls the annotations, then the retrain rule
    else:
        labels = retrain_when_labelled(scope, trigger)
    wer = labelled_production_wer(st.path("labelling_dir"), st.url("prediction_log_url"), version)
    record_check(st.path("evidently_workspace"), result, version, current, lexicon, wer)
    batch = opened["batch"] if opened else None
    return monitor_summary(result, decision, batch, labels, str(version), wer)
