"""The tiny real end-to-end cycle, driven through every command of the README as a user runs
it (`python -m flows.cli ...`), on a tiny scope with all state under tmp_path and servers on
free ports: run (synthesised audio -> ingest -> augment -> train -> evaluate -> MLflow ->
BentoML -> a real `bentoml serve`), simulate (traffic logged), monitor (drift report),
ingest, augment, train, package, serve, deploy, retrain (labelling batch, re-spoken new
words, warm-started training, gate), story, bench data, server.

`ingest --manifest` and `rollback` have their own tests in tests/flows/test_cli.py; `bench
serve` and `bench train` measure at fixed, benchmark sizes and are left to `make bench`.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml

from data_contracts.scoping import load_scope
from tests.conftest import tiny_scope
from tests.helpers import last_json, processes_over

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tiny_scope_file(tmp_path: Path) -> Path:
    base = tiny_scope(tmp_path / "ws", n_utterances=32, n_voices=8)
    scope = base.model_copy(
        update={
            "training": base.training.model_copy(
                update={"profile": "smoke", "max_minutes": 0.2, "eval_every_steps": 5}
            ),
            "serving": base.serving.model_copy(
                update={
                    "port": _free_port(),
                    "workers": 1,
                    "torch_threads": 1,
                    "reload_poll_seconds": 2.0,
                }
            ),
            "monitoring": base.monitoring.model_copy(update={"window": 30, "min_window": 20}),
            "hot_words": base.hot_words.model_copy(update={"min_count": 1}),
            "labelling": base.labelling.model_copy(
                update={"respeak_voices": 2, "labeller_delay_s": 1.0}
            ),
            "state": base.state.model_copy(
                update={"prefect_port": _free_port(), "evidently_port": _free_port()}
            ),
        }
    )
    path = tmp_path / "scope.yaml"
    path.write_text(yaml.safe_dump(scope.model_dump(mode="json")))
    return path


@pytest.mark.timeout(2400)  # the whole tour in one test: every command, servers included
def test_every_readme_command_on_a_tiny_scope(tmp_path: Path) -> None:
    scope_file = _tiny_scope_file(tmp_path)
    scope = load_scope(scope_file)
    service = f"http://127.0.0.1:{scope.serving.port}"

    def voicecycle(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "flows.cli", *args, "--scope", str(scope_file)],
            cwd=REPO,
            text=True,
            capture_output=True,
            timeout=timeout,
        )

    def ok(*args: str, own_server: bool = True) -> subprocess.CompletedProcess[str]:
        done = voicecycle(*args)
        assert done.returncode == 0, f"{args}: {done.stdout[-1500:]}\n{done.stderr[-3000:]}"
        # flows run on the scope's Prefect server (its UI shows them), never a throwaway one
        if own_server:
            assert "temporary server" not in done.stderr, f"{args} ran on an ephemeral server"
        return done

    try:
        # the README's first command: the cycle, the deployments, the worker, the endpoint
        ran = ok("run")
        assert "The cycle finished." in ran.stdout and f"{service}/transcribe" in ran.stdout
        assert httpx.get(service + "/readyz", timeout=10).status_code == 200
        first = httpx.get(service + "/metadata", timeout=10).json()["model_version"]
        reports = list(scope.state.path("runs_dir").glob("*/error_analysis/error_analysis.html"))
        assert len(reports) == 1, "the cycle's training run has its error analysis"
        run_dir = scope.state.path("run_dir")
        assert {"prefect-server.pid", "prefect-worker.pid", "service.pid"} <= {
            p.name for p in run_dir.iterdir()
        }

        sent = last_json(ok("simulate", "--count", "30", "--concurrency", "2").stdout)
        assert sent["sent"] == sent["ok"] == 30 and sent["scenario"] == "stable"
        assert sent["model_versions"] == [first]  # responses name the version that served
        checked = last_json(ok("monitor", "--no-trigger").stdout)
        # --no-trigger reports what the rule says and starts nothing
        assert checked["window"] == 30 and checked["retrain_flow_run"] is None
        assert 0.0 <= checked["drift_share"] <= 1.0
        assert (scope.state.path("reports_dir") / "drift" / "drift_report.html").is_file()

        # the champion, as served, on a manifest of recordings (here: the corpus's own CSV)
        corpus_csv = next(scope.state.path("corpus_dir").glob("*/manifest.csv"))
        scored = json.loads(ok("evaluate", "--manifest", str(corpus_csv), "--json").stdout)
        assert scored["n"] > 0 and scored["quarantined"] == 0 and 0 <= scored["wer"] <= 1
        assert scored["model_version"] == first and Path(scored["report"]).is_file()

        # the stages one by one
        summary = json.loads(ok("ingest", "--json").stdout)
        assert summary["dataset_version"].startswith("ds-") and summary["accepted"] > 0
        augmented = ok("augment", "--dataset-version", summary["dataset_version"])
        augmented_version = augmented.stdout.strip().splitlines()[-1]
        assert augmented_version.startswith("aug-")
        trained = last_json(ok("train", "--augmented-version", augmented_version).stdout)
        assert isinstance(trained["promoted"], bool) and trained["model_version"]
        packaged = last_json(ok("package", "--no-build").stdout)
        assert packaged["model_tag"].startswith(scope.registry.model_name + ":")

        assert ok("serve", "--stop").stdout.strip() == "stopped"
        assert "serving on" in ok("serve").stdout
        assert httpx.get(service + "/readyz", timeout=10).status_code == 200

        deployed = ok("deploy").stdout
        assert "deployed retrain/retrain" in deployed and "deployed monitor/monitor" in deployed
        # people label a batch of production audio: out as Label Studio tasks, back as its
        # JSON export (one new name typed, the rest accepted from the model's pre-annotation)
        exported = last_json(ok("label", "export", "--reason", "tour").stdout)
        assert exported["tasks"] > 0, exported
        tasks = json.loads(
            (scope.state.path("labelling_dir") / exported["batch"] / "tasks.json").read_text()
        )
        for i, task in enumerate(tasks):
            result = task["predictions"][0]["result"]
            if i == 0:
                result = [{**result[0], "value": {"text": ["who is oriane kolawole"]}}]
            task["annotations"] = [{"result": result, "was_cancelled": False}]
        export_file = tmp_path / "label-studio-export.json"
        export_file.write_text(json.dumps(tasks))
        imported = last_json(ok("label", "import", str(export_file), "--no-trigger").stdout)
        assert imported["labelled"] + len(imported["quarantined"]) == len(tasks)
        assert imported["labelled"] > 0 and not imported["retrain"]
        status = last_json(ok("label", "status").stdout)
        assert status["pending_labels"] == imported["labelled"]
        retrained = ok("retrain", "--reason", "tour of the commands", "--wait")
        assert "(Completed)" in retrained.stdout
        # the retrain took the labels and re-spoke the words the champion lacked
        assert last_json(ok("label", "status").stdout)["pending_labels"] == 0
        grown = max(
            scope.state.path("datasets_dir").glob("ds-*/manifest.csv"),
            key=lambda p: p.stat().st_mtime,
        )
        sources = set(pd.read_csv(grown, dtype=str, keep_default_na=False)["source"])
        assert {"synthetic", "respoken"} <= sources
        assert any(s.startswith("labelled-") for s in sources)

        # new names typed before they are spoken: hot words in the running decoder
        names = tmp_path / "names.txt"
        names.write_text("Wendeline Quarrington\nHoratio Blixen\n")  # names never seen
        feed = tmp_path / "typed.txt"  # the tiny scope takes a name seen once (min_count 1)
        feed.write_text("Wendeline Quarrington\nHoratio Blixen\n")
        hot = last_json(ok("hot-words", "update", "--queries", str(feed)).stdout)
        assert "wendeline quarrington" in hot["phrases"] and hot["written"]
        for _ in range(30):  # the service picks the list up at its next poll (2 s here)
            meta = httpx.get(service + "/metadata", timeout=10).json()
            if meta["hot_words_version"] == hot["hot_words_version"]:
                break
            time.sleep(1)
        assert meta["hot_words_version"] == hot["hot_words_version"]
        assert "horatio blixen" in meta["hot_words"]
        assert ok("simulate", "--count", "4", "--names", str(names)).returncode == 0

        results = tmp_path / "results"
        story = voicecycle(
            "story",
            "--windows", "1",
            "--chunk", "30",
            "--max-shifted", "90",
            "--eval-clips", "4",
            "--names", str(names),
            "--typed-queries", "200",
            "--after-windows", "1",
            "--out", str(results),
        )  # fmt: skip
        assert story.returncode in (0, 1), story.stderr[-3000:]
        figures = json.loads((results / "story.json").read_text())
        assert (story.returncode == 0) == figures["retrain_triggered"]
        assert figures["stable_windows"] == 1
        # a check after the retrain, on the same shifted traffic (tests/unit/test_story.py)
        after = figures["drift_share_series"]["after_retrain"]
        assert len(after) == 1 and figures["drift_share_after_retrain"] == after[-1]
        assert figures["drift_share_series"]["stable"] and figures["drift_share_peak"] is not None
        assert figures["newsroom_list"] is False and figures["new_names"] == 2
        assert figures["hot_words_version"] and "wer_new_names_hotwords" in figures
        if figures["labels"] and figures["service_serves_new_champion"]:
            # a batch of the new champion's answers labelled too: both versions' labelled WER
            assert figures["labels_after_retrain"] > 0
            by_version = figures["labelled_wer_by_version"]
            assert set(by_version) == {figures["champion_before"], figures["champion_after"]}
            assert all(wer is not None for wer in by_version.values()), by_version
        assert json.loads((results / "monitor.json").read_text())["window"] == 30

        # a benchmark measures apart from the servers (the train benchmark starts its own)
        ok("bench", "data", "--out", str(results), own_server=False)
        assert json.loads((results / "data.json").read_text())["utterances"] == 32

        assert ok("server", "status").stdout.strip() == "running"
    finally:
        stopped = voicecycle("server", "stop", timeout=120)
    assert "stopped: service, worker, evidently ui, prefect server" in stopped.stdout
    left = processes_over(scope.state.path("evidently_workspace"))  # the UI did not outlive it
    assert not left, left
    down = voicecycle("server", "status", timeout=120)
    assert down.returncode == 1 and down.stdout.strip() == "not running"
