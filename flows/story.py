"""The story that motivates the project, replayed with numbers, as a flow.

The system is trained on names known at launch and serves at `service_url` (default: the
scope's serving address; the CLI's `story` command runs the cycle first when there is no
champion and starts the servers). Stable traffic flows: no drift may fire. Then new
celebrities and politicians (the corpus's, or an operator's own `names`) appear: first in
the typed search queries of the period, among noise; the hot-words flow mines them and the
running decoder hears them at its next reload, without retraining. Then people ask for them,
often from a car; monitoring notices the shift and opens a labelling batch; the simulated
labeller (a separate actor, with a delay and some wrong labels) labels it through the
labelling tool; the retrain starts when the labels are in, re-speaks the mined names and the
labelled queries, and replaces the champion only if it is better, while a phone keeps
sending requests through the switch. Nobody hands the retrain the list of new names. After
the switch the same shifted traffic goes on, served by the new champion, for `after_windows`
checks: drift falls once the new champion's own served window is its reference. Then people
label a batch of what the new champion served (`voicecycle label export`, as an operator
checks a new model); those labels wait for the next retrain. Every check adds a snapshot to
the Evidently dashboard; the one after each batch's labels carries the serving version's WER
on them, so the labelled-WER panel shows the old champion's and the new one's.
Writes story.json and monitor.json under `out_dir` and prints both tables.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import flow

from data_contracts.scoping import Scope
from flows.hot_words import hot_words
from flows.label import label_export
from flows.monitor import monitor
from tasks.monitoring import reset_cooldown
from tasks.retraining import current_champion
from tasks.scoping import validate_scope
from tasks.simulation import render_traffic, send_traffic, service_base_url, traffic_voices
from tasks.story import (
    DriftSeries,
    StoryTally,
    decode_eval_set,
    hot_words_wer,
    labeller_retrain,
    new_entity_names,
    retrain_under_traffic,
    simulated_labeller,
    story_figures,
    tally_shifted,
    tally_stable,
    time_drift_check,
    typed_query_feed,
    version_labelled_wer,
    version_wer,
    wait_for_hot_words,
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
    names: list[str] | None = None,
    typed_queries: int = 1500,
    labelling_rounds: int = 5,
    after_windows: int = 2,
) -> dict[str, Any]:
    """Stable traffic (false alarms); new names typed (hot words), then spoken from cars
    until monitoring opens a batch; labels, retrain, switch; new-names WER at each step."""
    validate_scope(scope)
    started = time.perf_counter()
    service_url = service_url or service_base_url(scope)
    name, endpoint = scope.registry.model_name, service_url + "/transcribe"
    work = (scope.state.path("reports_dir") / "story").resolve()
    ledger = work / "ledger.jsonl"  # the simulator's truth, never the service's
    if reset_cooldown(scope.state.path("monitoring_dir")):
        print("story: cleared the retrain cooldown of an earlier run")
    before = str(current_champion(scope))
    voices = traffic_voices(scope)
    names = names or new_entity_names()

    # fixed evaluation sets, spoken by held-out voices, never sent to the service
    names_eval = decode_eval_set(render_traffic("new-names", eval_clips, voices, 7001, names))
    launch_eval = decode_eval_set(render_traffic("stable", eval_clips, voices, 7002))
    wer_new_before = version_wer(name, before, names_eval, work)
    wer_launch_before = version_wer(name, before, launch_eval, work)

    tally, shares = StoryTally(), DriftSeries()
    for w in range(stable_windows):
        clips = render_traffic("stable", scope.monitoring.window, voices, 100 + w)
        sent = send_traffic(endpoint, clips, "stable", ledger=ledger)
        check = monitor(scope, trigger=False)
        tally, shares = tally_stable(tally, check), shares.add("stable", check)
        print(
            f"story: stable window {w + 1}/{stable_windows}: {sent.ok}/{sent.sent} ok, "
            f"drift share {check['drift_share']:.2f}, drift={check['drift']}"
        )

    # the new names are typed before they are spoken: hot words, no new model version
    feed = typed_query_feed(names, typed_queries, 9001, work / "typed_queries.txt")
    mined = hot_words(scope, str(feed), before)
    heard = wait_for_hot_words(
        service_url, mined["hot_words_version"], 3 * scope.serving.reload_poll_seconds + 30
    )
    hot_dir = scope.state.path("hot_words_dir").resolve()
    wer_new_hot = hot_words_wer(name, before, names_eval, work, hot_dir)
    print(f"story: hot words {mined['hot_words_version']} served={heard}: WER {wer_new_hot:.3f}")

    while tally.detection is None and tally.shifted < max_shifted:
        clips = render_traffic("mixed", chunk, voices, 5000 + tally.shifted, names)
        send_traffic(endpoint, clips, "mixed", ledger=ledger)
        check = monitor(scope, trigger=True)
        tally, shares = tally_shifted(tally, check, chunk), shares.add("shifted", check)
        print(f"story: {tally.shifted} shifted requests, drift share {check['drift_share']:.2f}")

    # people label what drift opened; the retrain starts once enough labels are in
    labeller = scope.labelling
    retrain_run, labelled, wrong = tally.retrain_flow_run, 0, 0
    for r in range(labelling_rounds if tally.detection is not None else 0):
        if retrain_run is not None:
            break
        result = simulated_labeller(
            scope, ledger, labeller.labeller_delay_s, labeller.labeller_error_rate, 31 + r
        )
        labelled, wrong = labelled + int(result["labelled"]), wrong + int(result["wrong"])
        retrain_run = labeller_retrain(result)
        print(f"story: labeller round {r + 1}: {result['labelled']} labels, retrain={retrain_run}")
        if retrain_run is None:  # more production traffic, a fuller batch
            more = render_traffic("mixed", chunk, voices, 8000 + 100 * r, names)
            send_traffic(endpoint, more, "mixed", ledger=ledger)
            later = monitor(scope, trigger=True)  # it may start the retrain on what is in
            shares = shares.add("shifted", later)
            retrain_run = str(later["retrain_flow_run"]) if later["retrain_flow_run"] else None

    labelled_wers: dict[str, float | None] = {}  # the serving version's, on its labels
    if labelled:  # a check once the labels are in: its snapshot carries their WER
        check = monitor(scope, trigger=False)
        shares = shares.add("labels_in", check)
        labelled_wers |= version_labelled_wer(check)

    # a phone keeps asking while the retrain runs and the service switches models
    phone = render_traffic("stable", 20, voices, 6001)
    outcome = retrain_under_traffic(
        scope, endpoint, service_url, phone, retrain_run, before, retrain_timeout_s
    )
    after, switch = outcome.champion, outcome.switch

    # the same shifted traffic, now served by the new champion: does drift fall?
    for w in range(after_windows):
        clips = render_traffic("mixed", scope.monitoring.window, voices, 9500 + 1000 * w, names)
        sent = send_traffic(endpoint, clips, "mixed", ledger=ledger)
        check = monitor(scope, trigger=False)
        shares = shares.add("after_retrain", check)
        print(
            f"story: after the retrain, window {w + 1}/{after_windows}: {sent.ok}/{sent.sent} "
            f"ok, drift share {check['drift_share']:.2f}"
        )

    # people label a batch of what the new champion served; the labels wait for the next
    # retrain, and the check after them carries the new champion's labelled WER
    checked = 0
    if labelled and outcome.served_new:
        opened = label_export(scope, reason="checking the new champion")
        if opened["batch"] is not None:
            result = simulated_labeller(
                scope, ledger, labeller.labeller_delay_s, labeller.labeller_error_rate, 77, False
            )
            checked = int(result["labelled"])
            check = monitor(scope, trigger=False)
            shares = shares.add("labels_checked", check)
            labelled_wers |= version_labelled_wer(check)
            print(f"story: {checked} labels of the new champion's answers, {labelled_wers}")
    wers = {
        "wer_new_names_before": wer_new_before,
        "wer_new_names_hotwords": wer_new_hot,
        "wer_new_names_after": version_wer(name, after, names_eval, work),
        "wer_launch_names_before": wer_launch_before,
        "wer_launch_names_after": version_wer(name, after, launch_eval, work),
    }
    phases = {
        "hot_words_version": mined["hot_words_version"],
        "hot_words_served": heard,
        "hot_words_mined": len(mined["mined"]),
        "typed_queries": typed_queries,
        "labeller_delay_s": labeller.labeller_delay_s,
        "labeller_error_rate": labeller.labeller_error_rate,
        "labels": labelled,
        "labels_wrong": wrong,
        "labels_after_retrain": checked,
        "labelled_wer_by_version": labelled_wers,
        "failed_requests_during_switch": switch.failed,
        "requests_during_switch": switch.sent,
        "versions_during_switch": switch.versions,
        "new_names": len(names),
        **shares.figures(),
    }
    drift_seconds = time_drift_check(scope, work)
    figures = story_figures(
        tally,
        retrain_run,
        outcome.state,
        before,
        after,
        outcome.served_new,
        wers,
        phases,
        time.perf_counter() - started,
        service_url,
    )
    write_story_results(out_dir, figures, drift_seconds, scope.monitoring.window)
    return figures
