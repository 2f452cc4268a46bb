"""The story that motivates the project, replayed with numbers, as a flow.

The system is trained on names known at launch and serves at `service_url` (default: the
scope's serving address; the CLI's `story` command runs the cycle first when there is no
champion and starts the servers). Stable
traffic flows: no retrain may fire. Then production asks about new celebrities and
politicians, often from a car, and the newsroom publishes its list of the new names (text
only: the retrain's hot-word file, `training.hot_words_file`; `newsroom=False` leaves it
out). Monitoring notices, the retrain deployment runs with the newly labelled production
data and the list, and the new model replaces the old one only if it is better. Writes
story.json and monitor.json under `out_dir` and prints both tables.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import flow

from data_contracts.scoping import Scope
from flows.monitor import monitor
from tasks.monitoring import reset_cooldown
from tasks.retraining import current_champion
from tasks.scoping import validate_scope
from tasks.simulation import render_traffic, send_traffic, service_base_url, traffic_voices
from tasks.story import (
    StoryTally,
    decode_eval_set,
    new_entity_names,
    newsroom_scope,
    story_figures,
    tally_shifted,
    tally_stable,
    time_drift_check,
    version_wer,
    wait_for_flow_run,
    wait_for_served_version,
    write_story_results,
)


@flow(name="story", log_prints=True)
def story(
    scope: Scope,
    service_url: str | None = None,
    out_dir: Path = Path("bench/results"),
    stable_windows: int = 10,
    chunk: int = 100,
    max_shifted: int = 1500,
    eval_clips: int = 120,
    retrain_timeout_s: float = 3600.0,
    newsroom: bool = True,
) -> dict[str, Any]:
    """Stable traffic (false alarms), then new names from cars until monitoring retrains;
    the new-names WER before and after on the same held-out clips."""
    validate_scope(scope)
    started = time.perf_counter()
    service_url = service_url or service_base_url(scope)
    name, endpoint = scope.registry.model_name, service_url + "/transcribe"
    work = scope.state.path("reports_dir") / "story"
    if reset_cooldown(scope.state.path("monitoring_dir")):
        print("story: cleared the retrain cooldown of an earlier run")
    before = str(current_champion(scope))
    voices = traffic_voices(scope)

    # fixed evaluation sets, spoken by held-out voices, never sent to the service
    names_eval = decode_eval_set(render_traffic("new-names", eval_clips, voices, 7001))
    launch_eval = decode_eval_set(render_traffic("stable", eval_clips, voices, 7002))
    wer_new_before = version_wer(name, before, names_eval, work)
    wer_launch_before = version_wer(name, before, launch_eval, work)

    tally = StoryTally()
    for w in range(stable_windows):
        clips = render_traffic("stable", scope.monitoring.window, voices, 100 + w)
        sent = send_traffic(endpoint, clips, "stable")
        check = monitor(scope, trigger=False)
        tally = tally_stable(tally, check)
        print(
            f"story: stable window {w + 1}/{stable_windows}: {sent.ok}/{sent.sent} ok, "
            f"drift share {check['drift_share']:.2f}, drift={check['drift']}"
        )

    shifted_scope = scope
    if newsroom:
        shifted_scope = newsroom_scope(scope, work / "newsroom.txt", new_entity_names())
    while tally.detection is None and tally.shifted < max_shifted:
        clips = render_traffic("mixed", chunk, voices, 5000 + tally.shifted)
        send_traffic(endpoint, clips, "mixed")
        check = monitor(shifted_scope, trigger=True)
        tally = tally_shifted(tally, check, chunk)
        print(
            f"story: {tally.shifted} shifted requests, drift share {check['drift_share']:.2f}, "
            f"retrain={check['retrain']}"
        )

    retrain_state = wait_for_flow_run(tally.retrain_flow_run, retrain_timeout_s)
    after = str(current_champion(scope))
    served_new = wait_for_served_version(service_url, after, 90) if after != before else False
    wers = {
        "wer_new_names_before": wer_new_before,
        "wer_new_names_after": version_wer(name, after, names_eval, work),
        "wer_launch_names_before": wer_launch_before,
        "wer_launch_names_after": version_wer(name, after, launch_eval, work),
    }
    drift_seconds = time_drift_check(scope, work)
    figures = story_figures(
        tally,
        newsroom,
        retrain_state,
        before,
        after,
        served_new,
        wers,
        time.perf_counter() - started,
        service_url,
    )
    write_story_results(out_dir, figures, drift_seconds, scope.monitoring.window)
    return figures
