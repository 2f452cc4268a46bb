"""The story that motivates the project, replayed with numbers.

The system is trained on names known at launch and served. Stable traffic flows (no retrain
may fire). Then production starts asking about new celebrities and politicians, often from a
car, and the newsroom publishes its list of the new names (text only: it becomes the
retrain's hot-word file, `training.hot_words_file`; `newsroom=False` leaves it out).
Monitoring notices, the retrain deployment runs with the newly labelled production data and
the list, and the new model replaces the old one only if it is better. Writes story.json and
monitor.json under the results folder and prints both tables.
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.report import write_results
from data_contracts.scoping import Scope


def _wait_for_run(flow_run_id: str, timeout_s: float) -> str:
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            run = client.read_flow_run(flow_run_id)  # type: ignore[arg-type]
            if run.state is not None and run.state.is_final():
                return str(run.state.name)
            time.sleep(5)
    return "timed out"


def _wait_for_version(url: str, version: str, timeout_s: float) -> bool:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if str(httpx.get(url + "/metadata", timeout=5).json().get("model_version")) == version:
                return True
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(2)
    return False


def _wer_of(
    scope: Scope, version: str, waves: list[np.ndarray], refs: list[str], dest: Path
) -> float:
    from models.recognizer import Recognizer
    from tasks.evaluation import wer
    from tasks.registry import download_recognizer

    recognizer = Recognizer.load(
        download_recognizer(scope.registry.model_name, version, dest / f"v{version}")
    )
    return wer(refs, [t.text for t in recognizer.transcribe(waves)])


def _decode(clips: list[Any]) -> tuple[list[np.ndarray], list[str]]:
    import soundfile as sf

    return (
        [sf.read(io.BytesIO(c.wav_bytes), dtype="float32")[0] for c in clips],
        [c.reference for c in clips],
    )


def main(
    scope: Scope,
    scope_path: Path,
    out_dir: Path,
    stable_windows: int = 10,
    chunk: int = 100,
    max_shifted: int = 1500,
    eval_clips: int = 120,
    retrain_timeout_s: float = 3600.0,
    newsroom: bool = True,
) -> dict[str, Any]:
    """Replay the story on the scope's workspace (running the cycle first if needed)."""
    from flows.runtime import (
        configure_environment,
        deploy_all,
        service_url,
        start_server,
        start_service,
        start_worker,
    )

    configure_environment(scope)
    start_server(scope)
    from flows.full_cycle import full_cycle
    from flows.monitor import monitor
    from tasks.drift import drift_features, run_drift_report
    from tasks.monitoring import champion_reference, read_window
    from tasks.registry import CHAMPION, alias_version, configure_mlflow
    from tasks.traffic import SCENARIOS, make_clips, production_voices, send

    configure_mlflow(
        scope.state.url("mlflow_tracking_uri"),
        scope.registry.experiment,
        scope.state.path("mlflow_artifacts"),
    )
    started = time.perf_counter()
    if alias_version(scope.registry.model_name, CHAMPION) is None:
        print("story: no champion yet, running the full cycle first")
        full_cycle(scope)
    deploy_all(scope)
    start_worker(scope)
    url = start_service(scope, scope_path)
    cooldown = scope.state.workspace / "monitoring" / "state.json"
    if cooldown.is_file():  # a replay starts monitoring afresh; the rule itself is unit-tested
        print(f"story: clearing the retrain cooldown of an earlier run ({cooldown})")
        cooldown.unlink()
    endpoint = url + "/transcribe"
    before = str(alias_version(scope.registry.model_name, CHAMPION))
    synthetic = next((s.synthetic for s in scope.sources if s.synthetic), None)
    voices = production_voices(
        scope.state.path("datasets_dir"), synthetic.seed if synthetic else 13
    )
    work = scope.state.workspace / "story"
    work.mkdir(parents=True, exist_ok=True)

    # fixed evaluation sets, spoken by held-out voices, never sent to the service
    names_eval = _decode(make_clips(SCENARIOS["new-names"], eval_clips, voices, seed=7001))
    launch_eval = _decode(make_clips(SCENARIOS["stable"], eval_clips, voices, seed=7002))
    wer_new_before = _wer_of(scope, before, *names_eval, work)
    wer_launch_before = _wer_of(scope, before, *launch_eval, work)

    window = scope.monitoring.window
    false_alarms, stable_shares = 0, []
    for w in range(stable_windows):
        result = send(
            endpoint,
            make_clips(SCENARIOS["stable"], window, voices, seed=100 + w),
            "stable",
            concurrency=4,
        )
        check = monitor(scope, trigger=False)
        stable_shares.append(float(check.get("drift_share", 0.0)))
        false_alarms += int(bool(check["drift"]))
        print(
            f"story: stable window {w + 1}/{stable_windows}: {result.ok}/{result.sent} ok, "
            f"drift share {stable_shares[-1]:.2f}, drift={check['drift']}"
        )

    # the newsroom's list of the new names: text the retrain may use (never test audio)
    shifted_scope = scope
    if newsroom:
        from tasks.corpus import ENTITY_NAMES
        from tasks.text import normalise_transcript

        listed = work / "newsroom.txt"
        listed.write_text("".join(f"{normalise_transcript(n)}\n" for n in ENTITY_NAMES["new"]))
        shifted_scope = scope.model_copy(
            update={"training": scope.training.model_copy(update={"hot_words_file": listed})}
        )

    shifted, detection, retrain_run, detect_share = 0, None, None, None
    while shifted < max_shifted:
        send(
            endpoint,
            make_clips(SCENARIOS["mixed"], chunk, voices, seed=5000 + shifted),
            "mixed",
            concurrency=4,
        )
        shifted += chunk
        check = monitor(shifted_scope, trigger=True)
        print(
            f"story: {shifted} shifted requests, drift share {check.get('drift_share', 0):.2f}"
            f", retrain={check['retrain']}"
        )
        if check["retrain"]:
            detection, retrain_run = shifted, check["retrain_flow_run"]
            detect_share = float(check["drift_share"])
            break

    retrain_state = _wait_for_run(str(retrain_run), retrain_timeout_s) if retrain_run else None
    after = str(alias_version(scope.registry.model_name, CHAMPION))
    served_new = _wait_for_version(url, after, 90) if after != before else False
    wer_new_after = _wer_of(scope, after, *names_eval, work)
    wer_launch_after = _wer_of(scope, after, *launch_eval, work)

    # drift-check time on 10,000 logged predictions (the log tiled up to that size)
    log = read_window(scope.state.url("prediction_log_url"), 10_000)
    tiled = log.iloc[np.arange(10_000) % len(log)].reset_index(drop=True)
    reference, lexicon, _ = champion_reference(
        scope.registry.model_name, CHAMPION, work / "reference"
    )
    t0 = time.perf_counter()
    run_drift_report(
        drift_features(reference, lexicon), drift_features(tiled, lexicon), work / "drift_10k.html"
    )
    drift_seconds = time.perf_counter() - t0

    story = {
        "false_alarms": false_alarms,
        "stable_windows": stable_windows,
        "stable_max_drift_share": round(max(stable_shares, default=0.0), 3),
        "requests_to_detection": detection,
        "drift_share_at_detection": detect_share,
        "retrain_triggered": retrain_run is not None,
        "newsroom_list": newsroom,
        "retrain_state": retrain_state,
        "champion_before": before,
        "champion_after": after,
        "service_serves_new_champion": served_new,
        "wer_new_names_before": round(wer_new_before, 4),
        "wer_new_names_after": round(wer_new_after, 4),
        "wer_launch_names_before": round(wer_launch_before, 4),
        "wer_launch_names_after": round(wer_launch_after, 4),
        "new_over_launch_after": round(wer_new_after / max(wer_launch_after, 1e-9), 2),
        "story_seconds": round(time.perf_counter() - started, 1),
        "service": service_url(scope),
    }
    write_results(out_dir, "story", story)
    write_results(
        out_dir,
        "monitor",
        {
            "drift_check_seconds_10k": round(drift_seconds, 2),
            "false_alarms": false_alarms,
            "stable_windows": stable_windows,
            "window": window,
            "requests_to_detection": detection,
            "wer_new_names_before": story["wer_new_names_before"],
            "wer_new_names_after": story["wer_new_names_after"],
            "wer_launch_names_after": story["wer_launch_names_after"],
        },
    )
    return story
