"""The story's steps: fixed evaluation sets spoken by held-out voices, the WER of a registered
version on them (also with its mined hot-word list), the typed-query feed of the new names,
the simulated labeller, waiting for the retrain and for the service to serve its result (with
requests sent all through the switch), the drift-check time on a large window, the figures.

The flow that replays the story (flows/story.py) wires these with the simulation tasks and
the monitor flow; the story only touches the system through HTTP, the registry and Prefect.
"""

from __future__ import annotations

import io
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from prefect import task

from data_contracts.scoping import Scope
from models.recognizer import Recognizer
from tasks.drift import drift_features, run_drift_report
from tasks.simulation import Clip, send

STORY_FILE = "story.json"
MONITOR_FILE = "monitor.json"


@dataclass(frozen=True)
class EvalSet:
    """Clips never sent to the service, decoded, with their true transcripts."""

    waves: tuple[np.ndarray, ...]
    references: tuple[str, ...]


@dataclass(frozen=True)
class StoryTally:
    """What the story has seen so far in one phase of traffic."""

    windows: int = 0
    false_alarms: int = 0
    max_drift_share: float = 0.0
    shifted: int = 0
    detection: int | None = None
    drift_share_at_detection: float | None = None
    retrain_flow_run: str | None = None


@dataclass(frozen=True)
class DriftSeries:
    """The drift share of every check the story ran, in order, by phase (stable, shifted,
    labels_in, after_retrain): what the Evidently dashboard plots over time."""

    checks: tuple[tuple[str, float], ...] = ()

    def add(self, phase: str, check: dict[str, Any]) -> DriftSeries:
        """This series with one more check."""
        return DriftSeries((*self.checks, (phase, round(float(check["drift_share"]), 3))))

    def figures(self) -> dict[str, Any]:
        """story.json's keys: the series by phase, and where drift ended after the retrain."""
        by_phase: dict[str, list[float]] = {}
        for phase, share in self.checks:
            by_phase.setdefault(phase, []).append(share)
        after = by_phase.get("after_retrain", [])
        before = [s for p, s in self.checks if p in ("shifted", "labels_in")]
        return {
            "drift_share_series": by_phase,
            "drift_share_peak": max(before, default=None),
            "drift_share_after_retrain": after[-1] if after else None,
        }


@task(name="decode-eval-set")
def decode_eval_set(clips: list[Clip]) -> EvalSet:
    """Decode the WAV bytes of clips into a fixed evaluation set."""
    import soundfile as sf

    return EvalSet(
        tuple(sf.read(io.BytesIO(c.wav_bytes), dtype="float32")[0] for c in clips),
        tuple(c.reference for c in clips),
    )


@task(name="version-wer", retries=1, retry_delay_seconds=2)
def version_wer(model_name: str, version: str, eval_set: EvalSet, dest: Path) -> float:
    """The WER of a registered version on an evaluation set (as it serves: its saved decoder)."""
    from tasks.evaluation import wer
    from tasks.registry import download_recognizer

    recognizer = Recognizer.load(download_recognizer(model_name, version, dest / f"v{version}"))
    hypotheses = [t.text for t in recognizer.transcribe(list(eval_set.waves))]
    return wer(list(eval_set.references), hypotheses)


@task(name="hot-words-wer", retries=1, retry_delay_seconds=2)
def hot_words_wer(
    model_name: str, version: str, eval_set: EvalSet, dest: Path, hot_words_dir: Path
) -> float:
    """The WER of a registered version with its newest hot-word list, as the service decodes
    once it has picked the list up (the same file, the same recogniser)."""
    from data_contracts.hot_words import latest_list
    from tasks.evaluation import wer
    from tasks.hot_words import recognizer_with_list
    from tasks.registry import download_recognizer

    base = Recognizer.load(download_recognizer(model_name, version, dest / f"v{version}"))
    recognizer = recognizer_with_list(base, latest_list(hot_words_dir, model_name, version))
    hypotheses = [t.text for t in recognizer.transcribe(list(eval_set.waves))]
    return wer(list(eval_set.references), hypotheses)


@task(name="typed-query-feed")
def typed_query_feed(names: list[str], count: int, seed: int, path: Path) -> Path:
    """The typed search queries of the period (the new names among noise), as a feed file."""
    from tasks.simulated_queries import simulated_typed_queries, write_typed_queries

    return write_typed_queries(path, simulated_typed_queries(names, count, seed))


@task(name="simulated-labeller")
def simulated_labeller(
    scope: Scope,
    ledger: Path,
    delay_s: float,
    error_rate: float,
    seed: int,
    trigger: bool = True,
) -> dict[str, Any]:
    """The labeller labels the open batches through the labelling tool (after its delay, with
    one word wrong in `error_rate` of its labels); what it did and what the import started
    (`trigger=False`: the import starts no retrain, the labels wait for the next)."""
    from tasks.simulated_labeller import label_open_batches

    return dict(label_open_batches.fn(scope, ledger, delay_s, error_rate, seed, trigger))


def version_labelled_wer(check: dict[str, Any]) -> dict[str, float | None]:
    """{serving version: its WER on its labelled production samples} of a monitoring check
    (None: none of its answers labelled yet)."""
    wer = check.get("labelled_wer")
    return {str(check["model_version"]): None if wer is None else round(float(wer), 4)}


def labeller_retrain(result: dict[str, Any]) -> str | None:
    """The retrain flow run the labeller's import started (None: not enough labels yet)."""
    imported = result.get("import") or {}
    run = imported.get("retrain_flow_run") if isinstance(imported, dict) else None
    return str(run) if run else None


@task(name="new-entity-names")
def new_entity_names() -> list[str]:
    """The celebrities and politicians that appear after launch (the corpus's `new` era)."""
    from tasks.corpus import ENTITY_NAMES

    return list(ENTITY_NAMES["new"])


def tally_stable(tally: StoryTally, check: dict[str, Any]) -> StoryTally:
    """Count one stable window's monitoring result (a drift here is a false alarm)."""
    share = float(check.get("drift_share", 0.0))
    return StoryTally(
        windows=tally.windows + 1,
        false_alarms=tally.false_alarms + int(bool(check["drift"])),
        max_drift_share=max(tally.max_drift_share, share),
    )


def tally_shifted(tally: StoryTally, check: dict[str, Any], sent: int) -> StoryTally:
    """Count a chunk of shifted traffic; note the detection when monitoring acted on the
    drift (opened a labelling batch, or started a retrain)."""
    shifted = tally.shifted + sent
    acted = check.get("labelling_batch") is not None or bool(check.get("retrain"))
    if not acted:
        return StoryTally(tally.windows, tally.false_alarms, tally.max_drift_share, shifted)
    run = check.get("retrain_flow_run")
    return StoryTally(
        tally.windows,
        tally.false_alarms,
        tally.max_drift_share,
        shifted,
        detection=shifted,
        drift_share_at_detection=float(check["drift_share"]),
        retrain_flow_run=str(run) if run else None,
    )


@dataclass
class SwitchTally:
    """Requests sent while the service switches models: how many, how many failed, which
    versions answered."""

    sent: int = 0
    failed: int = 0
    versions: list[str] = field(default_factory=list)


class SwitchSender:
    """A background phone: sends `clips` round and round (one at a time, one every
    `interval_s`) until stopped."""

    def __init__(self, url: str, clips: list[Clip], interval_s: float = 0.0) -> None:
        self.url, self.clips, self.tally = url, clips, SwitchTally()
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="switch-sender", daemon=True)

    def _run(self) -> None:
        i = 0
        while not self._stop.wait(self.interval_s if i else 0.0):
            result = send(self.url, [self.clips[i % len(self.clips)]], "switch", concurrency=1)
            i += 1
            self.tally.sent += result.sent
            self.tally.failed += result.sent - result.ok
            for version in result.model_versions:
                if not self.tally.versions or self.tally.versions[-1] != version:
                    self.tally.versions.append(version)

    def __enter__(self) -> SwitchSender:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


@dataclass(frozen=True)
class RetrainOutcome:
    """How the retrain ended, the champion after it, and the requests sent meanwhile."""

    state: str | None
    champion: str
    served_new: bool
    switch: SwitchTally


@task(name="retrain-under-traffic")
def retrain_under_traffic(
    scope: Scope,
    endpoint: str,
    base_url: str,
    clips: list[Clip],
    flow_run_id: str | None,
    champion_before: str,
    timeout_s: float,
    interval_s: float = 0.25,
) -> RetrainOutcome:
    """Wait for the retrain while a phone keeps sending requests (one every `interval_s`),
    through the switch to the new champion and a few seconds after it is served."""
    from tasks.retraining import current_champion

    with SwitchSender(endpoint, clips, interval_s) as sender:
        state = wait_for_flow_run.fn(flow_run_id, timeout_s)
        after = str(current_champion.fn(scope))
        served = after != champion_before and wait_for_served_version.fn(base_url, after, 120)
        time.sleep(3.0)
    return RetrainOutcome(state, after, served, sender.tally)


@task(name="wait-for-hot-words")
def wait_for_hot_words(base_url: str, label: str, timeout_s: float) -> bool:
    """True once the service's /metadata names hot-word list `label` (within `timeout_s`)."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            metadata = httpx.get(base_url + "/metadata", timeout=5).json()
            if metadata.get("hot_words_version") == label:
                return True
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(1)
    return False


@task(name="wait-for-flow-run")
def wait_for_flow_run(flow_run_id: str | None, timeout_s: float) -> str | None:
    """The final state name of a flow run, once it is final ("timed out" past the timeout)."""
    if flow_run_id is None:
        return None
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            run = client.read_flow_run(flow_run_id)  # type: ignore[arg-type]
            if run.state is not None and run.state.is_final():
                return str(run.state.name)
            time.sleep(5)
    return "timed out"


@task(name="wait-for-served-version")
def wait_for_served_version(base_url: str, version: str, timeout_s: float) -> bool:
    """True once the service's /metadata names `version` (within `timeout_s`)."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            metadata = httpx.get(base_url + "/metadata", timeout=5).json()
            if str(metadata.get("model_version")) == version:
                return True
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(2)
    return False


@task(name="time-drift-check")
def time_drift_check(scope: Scope, work: Path, rows: int = 10_000) -> float:
    """Seconds one drift check takes on `rows` logged predictions (the log tiled up)."""
    from tasks.monitoring import champion_reference, read_window
    from tasks.registry import CHAMPION

    log = read_window.fn(scope.state.url("prediction_log_url"), rows)
    tiled = log.iloc[np.arange(rows) % len(log)].reset_index(drop=True)
    reference, lexicon, _ = champion_reference.fn(
        scope.registry.model_name, CHAMPION, work / "reference"
    )
    started = time.perf_counter()
    run_drift_report(
        drift_features(reference, lexicon), drift_features(tiled, lexicon), work / "drift_10k.html"
    )
    return time.perf_counter() - started


@task(name="story-figures")
def story_figures(
    tally: StoryTally,
    retrain_flow_run: str | None,
    retrain_state: str | None,
    champion_before: str,
    champion_after: str,
    served_new: bool,
    wers: dict[str, float],
    phases: dict[str, Any],
    seconds: float,
    service: str,
) -> dict[str, Any]:
    """The story's figures, as story.json holds them (`phases`: the hot-word, labeller and
    switch figures, as they are)."""
    return {
        "false_alarms": tally.false_alarms,
        "stable_windows": tally.windows,
        "stable_max_drift_share": round(tally.max_drift_share, 3),
        "requests_to_detection": tally.detection,
        "drift_share_at_detection": tally.drift_share_at_detection,
        "retrain_triggered": retrain_flow_run is not None,
        "newsroom_list": False,  # the retrain hears of new names only from typed queries
        "retrain_state": retrain_state,
        "champion_before": champion_before,
        "champion_after": champion_after,
        "service_serves_new_champion": served_new,
        **{key: round(value, 4) for key, value in wers.items()},
        "hotwords_over_before": round(
            wers["wer_new_names_hotwords"] / max(wers["wer_new_names_before"], 1e-9), 2
        ),
        "new_over_launch_after": round(
            wers["wer_new_names_after"] / max(wers["wer_launch_names_after"], 1e-9), 2
        ),
        **phases,
        "story_seconds": round(seconds, 1),
        "service": service,
    }


@task(name="write-story-results")
def write_story_results(
    out_dir: Path, story: dict[str, Any], drift_seconds: float, window: int
) -> tuple[Path, Path]:
    """story.json and monitor.json under `out_dir`, each also printed as a table."""
    from tasks.results import write_results

    monitor = {
        "drift_check_seconds_10k": round(drift_seconds, 2),
        "false_alarms": story["false_alarms"],
        "stable_windows": story["stable_windows"],
        "window": window,
        "requests_to_detection": story["requests_to_detection"],
        "wer_new_names_before": story["wer_new_names_before"],
        "wer_new_names_hotwords": story["wer_new_names_hotwords"],
        "wer_new_names_after": story["wer_new_names_after"],
        "wer_launch_names_after": story["wer_launch_names_after"],
    }
    return (
        write_results(out_dir, STORY_FILE.removesuffix(".json"), story),
        write_results(out_dir, MONITOR_FILE.removesuffix(".json"), monitor),
    )
