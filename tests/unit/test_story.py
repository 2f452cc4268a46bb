"""The story's bookkeeping: false alarms in stable windows, the detection point, the
labeller's retrain, requests through the switch, the figures."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tasks.simulation import Clip
from tasks.story import (
    DriftSeries,
    StoryTally,
    SwitchSender,
    labeller_retrain,
    story_figures,
    tally_shifted,
    tally_stable,
    version_labelled_wer,
    write_story_results,
)


def _check(drift: bool, retrain: bool, share: float, run: str | None = None) -> dict[str, object]:
    return {"drift": drift, "retrain": retrain, "drift_share": share, "retrain_flow_run": run}


def test_stable_windows_count_false_alarms_and_the_largest_share() -> None:
    tally = StoryTally()
    for check in (_check(False, False, 0.1), _check(True, False, 0.4), _check(False, False, 0.2)):
        tally = tally_stable(tally, check)
    assert (tally.windows, tally.false_alarms, tally.max_drift_share) == (3, 1, 0.4)
    assert tally.detection is None and tally.retrain_flow_run is None


def test_shifted_traffic_records_where_monitoring_acted_on_the_drift() -> None:
    tally = tally_shifted(StoryTally(windows=2), _check(True, False, 0.3), 100)
    assert tally.shifted == 100 and tally.detection is None  # drift, but cooling down
    tally = tally_shifted(tally, _check(True, True, 0.6, "run-1"), 100)
    assert (tally.shifted, tally.detection, tally.drift_share_at_detection) == (200, 200, 0.6)
    assert tally.retrain_flow_run == "run-1" and tally.windows == 2
    # drift opens a labelling batch: detected, and no retrain until the labels are in
    opened = {**_check(True, False, 0.5), "labelling_batch": "batch-1"}
    tally = tally_shifted(StoryTally(), opened, 300)
    assert tally.detection == 300 and tally.retrain_flow_run is None


def test_the_retrain_is_the_one_the_labellers_import_started() -> None:
    assert labeller_retrain({"labelled": 40, "import": {"retrain_flow_run": "run-7"}}) == "run-7"
    assert labeller_retrain({"labelled": 3, "import": {"retrain_flow_run": None}}) is None
    assert labeller_retrain({"labelled": 0}) is None


def test_figures_and_results_files(tmp_path: Path) -> None:
    tally = StoryTally(10, 0, 0.21, 300, 300, 0.55, None)
    wers = {
        "wer_new_names_before": 0.5,
        "wer_new_names_hotwords": 0.2,
        "wer_new_names_after": 0.1,
        "wer_launch_names_before": 0.05,
        "wer_launch_names_after": 0.05,
    }
    phases = {"labeller_delay_s": 30.0, "failed_requests_during_switch": 0}
    figures = story_figures.fn(
        tally, "run-1", "Completed", "1", "2", True, wers, phases, 12.34, "http://127.0.0.1:3000"
    )
    assert figures["retrain_triggered"] is True and figures["requests_to_detection"] == 300
    assert figures["newsroom_list"] is False
    assert figures["hotwords_over_before"] == 0.4 and figures["new_over_launch_after"] == 2.0
    assert figures["failed_requests_during_switch"] == 0 and figures["story_seconds"] == 12.3
    story_json, monitor_json = write_story_results.fn(tmp_path, figures, 1.5, 400)
    assert story_json == tmp_path / "story.json"
    assert json.loads(story_json.read_text())["champion_after"] == "2"
    monitor = json.loads(monitor_json.read_text())
    assert monitor["drift_check_seconds_10k"] == 1.5 and monitor["window"] == 400
    assert monitor["wer_new_names_hotwords"] == 0.2


class _Switching(BaseHTTPRequestHandler):
    """Answers as version 1, refuses one request, then answers as version 2."""

    answered = 0

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers["Content-Length"]))
        n = type(self).answered = type(self).answered + 1
        status, version = (503, "1") if n == 3 else (200, "1" if n < 5 else "2")
        body = json.dumps({"transcript": "hi", "model_version": version}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def switching_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Switching)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/transcribe"
    server.shutdown()
    server.server_close()


def test_the_switch_sender_counts_failures_and_the_versions_that_answered(
    switching_server: str,
) -> None:
    import time

    clip = Clip(b"RIFF....", "hi", "launch", "clean")
    with SwitchSender(switching_server, [clip]) as sender:
        deadline = time.monotonic() + 10
        while sender.tally.sent < 8 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert sender.tally.sent >= 8 and sender.tally.failed == 1
    assert sender.tally.versions == ["1", "2"]


def test_the_drift_series_keeps_each_phase_and_where_drift_ended() -> None:
    shares = DriftSeries()
    for phase, share in [
        ("stable", 0.0),
        ("stable", 0.09),
        ("shifted", 0.45),
        ("labels_in", 0.55),
        ("after_retrain", 0.5),
        ("after_retrain", 0.0909),
    ]:
        shares = shares.add(phase, {"drift_share": share, "drift": share > 0.3})
    figures = shares.figures()
    assert figures["drift_share_series"] == {
        "stable": [0.0, 0.09],
        "shifted": [0.45],
        "labels_in": [0.55],
        "after_retrain": [0.5, 0.091],
    }
    assert figures["drift_share_peak"] == 0.55
    assert figures["drift_share_after_retrain"] == 0.091
    assert DriftSeries().figures()["drift_share_after_retrain"] is None  # no check after


def test_each_version_keeps_its_own_labelled_wer() -> None:
    wers: dict[str, float | None] = {}
    wers |= version_labelled_wer({"model_version": "1", "labelled_wer": 0.312345})
    wers |= version_labelled_wer({"model_version": 2, "labelled_wer": None})  # none labelled
    assert wers == {"1": 0.3123, "2": None}


def _log(rng: np.random.Generator, n: int, car: float, version: str) -> pd.DataFrame:
    """A prediction-log window: `car` of it in-car (lower SNR, louder low band, less sure)."""
    in_car = rng.random(n) < car
    return pd.DataFrame(
        {
            "duration_s": rng.normal(2.0, 0.4, n),
            "rms_dbfs": np.where(in_car, rng.normal(-18, 2, n), rng.normal(-23, 2, n)),
            "snr_db_estimate": np.where(in_car, rng.normal(3, 3, n), rng.normal(25, 5, n)),
            "spectral_centroid_hz": rng.normal(1500, 200, n),
            "spectral_bandwidth_hz": rng.normal(1200, 150, n),
            "spectral_rolloff_hz": rng.normal(3000, 300, n),
            "low_band_share": np.where(in_car, rng.normal(0.6, 0.05, n), rng.normal(0.3, 0.05, n)),
            "silence_share": rng.normal(0.2, 0.05, n),
            "confidence": np.where(in_car, rng.normal(0.6, 0.1, n), rng.normal(0.9, 0.05, n)),
            "n_words": rng.integers(2, 6, n).astype(float),
            "transcript": ["play some jazz"] * n,
            "model_version": version,
        }
    )


def test_a_retrained_champion_measures_drift_from_its_first_served_window(tmp_path: Path) -> None:
    """Held-out predictions are the evaluation mix; production moved to cars. The first model
    keeps its held-out reference; a retrained one adopts its first full window served alone,
    so the same shifted traffic stops drifting from the check after that window."""
    import mlflow

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        _drift_from_the_served_window(tmp_path)
    finally:
        mlflow.set_tracking_uri(previous)


def _drift_from_the_served_window(tmp_path: Path) -> None:
    import mlflow

    from tasks.drift import run_drift_report
    from tasks.monitoring import served_reference

    client = mlflow.MlflowClient()
    experiment = client.create_experiment("story", artifact_location=str(tmp_path / "art"))
    client.create_registered_model("asr")
    for tags in ({}, {"warm_start_from": "1"}):  # the first model, then a retrain of it
        run = client.create_run(experiment, tags=tags)
        client.create_model_version("asr", str(tmp_path / "art"), run.info.run_id)
    rng = np.random.default_rng(0)
    held_out, monitoring = _log(rng, 600, 0.5, "1"), tmp_path / "monitoring"

    def drift_share(reference: pd.DataFrame, window: pd.DataFrame) -> float:
        from tasks.drift import drift_features

        lexicon = {"play", "some", "jazz"}
        ref, cur = drift_features(reference, lexicon), drift_features(window, lexicon)
        return run_drift_report(ref, cur, tmp_path / "r.html").drift_share

    shifted = _log(rng, 200, 0.95, "1")
    first = served_reference.fn("asr", "1", held_out, shifted, monitoring, 200)
    assert first is held_out and not (monitoring / "baselines").exists()  # not a retrain

    served = _log(rng, 200, 0.95, "2")
    mixed_versions = pd.concat([shifted.tail(100), served.tail(100)], ignore_index=True)
    assert served_reference.fn("asr", "2", held_out, mixed_versions, monitoring, 200) is held_out
    assert not (monitoring / "baselines" / "v2.csv").exists()  # not served by v2 alone
    reference = served_reference.fn("asr", "2", held_out, served, monitoring, 200)
    assert reference is held_out  # this window is still checked against the held-out mix
    assert drift_share(reference, served) > 0.3
    assert (monitoring / "baselines" / "v2.csv").is_file()

    later = _log(rng, 200, 0.95, "2")
    reference = served_reference.fn("asr", "2", held_out, later, monitoring, 200)
    assert len(reference) == 200 and drift_share(reference, later) < 0.3  # drift fell
    assert drift_share(reference, _log(rng, 200, 0.5, "2")) > 0.3  # and rises on a new shift
