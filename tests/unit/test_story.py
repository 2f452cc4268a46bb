"""The story's bookkeeping: false alarms in stable windows, the detection point, the
labeller's retrain, requests through the switch, the figures."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tasks.simulation import Clip
from tasks.story import (
    StoryTally,
    SwitchSender,
    labeller_retrain,
    story_figures,
    tally_shifted,
    tally_stable,
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
