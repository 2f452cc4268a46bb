"""The labelling files without a server: Label Studio tasks out, its JSON export back in as
labels (bad tasks quarantined with reasons), the retrain rule, claims and the labeller."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from data_contracts.labels import FROM_NAME, ExportedTask, transcription_result
from data_contracts.scoping import LabellingScope, Scope
from tasks.labelling import (
    claim_labels,
    import_labels,
    labelled_batches,
    labelling_status,
    labels_ready,
    load_export,
    open_labelling_batch,
)
from tasks.simulated_labeller import label_through_files, one_word_wrong
from tests.production_log import production_log


def annotated(text: str, cancelled: bool = False) -> list[dict[str, Any]]:
    return [{"id": 1, "result": transcription_result(text), "was_cancelled": cancelled}]


@pytest.fixture
def opened(tmp_path: Path) -> tuple[Scope, list[dict[str, Any]]]:
    scope = Scope().with_workspace(tmp_path)
    batch = open_labelling_batch.fn(
        production_log(tmp_path, 5),
        scope.state.path("labelling_dir"),
        scope.labelling,
        scope.state.path("prediction_audio_dir"),
    )
    assert batch is not None and batch.n_tasks == 4
    return scope, json.loads((batch.path / "tasks.json").read_text())


def test_a_batch_goes_out_as_label_studio_tasks_least_confident_first(
    opened: tuple[Scope, list[dict[str, Any]]],
) -> None:
    scope, tasks = opened
    assert [t["data"]["request_id"] for t in tasks] == ["r4", "r1", "r2", "r0"]  # r3: no consent
    first = ExportedTask.model_validate(tasks[0])
    assert first.predictions[0].score == pytest.approx(0.1)  # type: ignore[union-attr]
    prediction = tasks[0]["predictions"][0]["result"][0]
    assert prediction["from_name"] == FROM_NAME and prediction["value"]["text"] == ["play jazz 4"]
    batch_id = tasks[0]["data"]["batch"]
    assert tasks[0]["data"]["audio"] == f"/data/local-files/?d={batch_id}/audio/r4.wav"
    served = scope.labelling.model_copy(update={"audio_base_url": "http://127.0.0.1:9/l/"})
    again = open_labelling_batch.fn(
        production_log(scope.state.workspace, 5),
        scope.state.path("labelling_dir"),
        served,
        scope.state.path("prediction_audio_dir"),
    )
    assert again is None  # nothing is exported twice


def test_a_moved_workspace_still_finds_the_logged_audio(tmp_path: Path) -> None:
    log = production_log(tmp_path / "ws", 5)  # the log holds absolute paths under ws/
    shutil.move(tmp_path / "ws", tmp_path / "moved")
    scope = Scope().with_workspace(tmp_path / "moved")
    batch = open_labelling_batch.fn(
        log,
        scope.state.path("labelling_dir"),
        scope.labelling,
        scope.state.path("prediction_audio_dir"),
    )
    assert batch is not None and batch.n_tasks == 4  # none taken for purged
    assert sorted(p.name for p in (batch.path / "audio").iterdir()) == [
        "r0.wav", "r1.wav", "r2.wav", "r4.wav",
    ]  # fmt: skip


def test_the_export_comes_back_as_labels_with_bad_tasks_quarantined(
    opened: tuple[Scope, list[dict[str, Any]]],
) -> None:
    scope, tasks = opened
    labelling_dir = scope.state.path("labelling_dir")
    r4, r1, r2, r0 = (dict(t) for t in tasks)
    r4["annotations"] = annotated("who is  Zarina okonkwo")
    r1["annotations"] = annotated("", cancelled=True)  # skipped
    r2["annotations"] = annotated("   ")  # empty
    r0["annotations"] = []  # not labelled yet
    escape = {**r4, "data": {**r4["data"], "batch": "batch-..", "request_id": "r4"}}
    malformed = {"id": 99, "data": {"audio": "x"}, "annotations": annotated("x")}
    bad_value = {
        **r4,
        "annotations": [{"result": [{**annotated("x")[0]["result"][0], "value": {}}]}],
    }
    export = [r4, r1, r2, r0, escape, malformed, bad_value, "not a task"]

    done = import_labels.fn(export, labelling_dir)

    assert done["labelled"] == 1
    labels = pd.read_csv(done["label_files"][0], dtype=str, keep_default_na=False)
    assert labels.to_dict("records")[0] == {
        "utterance_id": "r4",
        "audio_path": "audio/r4.wav",
        "transcript": "who is Zarina okonkwo",  # ingestion normalises case like any source
        "voice": "production:r4",
        "synthesizer": "production",
        "intent": "unknown",
        "entities": "",
        "era": "production",
    }
    reasons = {(q["request_id"], q["reason"].split(":")[0]) for q in done["quarantined"]}
    assert ("r1", "skipped by the annotator (was_cancelled)") in reasons
    assert ("r2", "empty transcription") in reasons
    assert ("r0", "no annotation") in reasons
    assert any(r == "unknown batch 'batch-..'" or "outside" in r for _, r in reasons)
    assert (None, "malformed task") in reasons
    assert ("r4", "malformed annotation") in reasons
    assert len(done["quarantined"]) == 7
    assert pd.read_csv(done["quarantine_file"])["reason"].str.len().gt(0).all()
    # the same export again: nothing imported twice, nothing lost
    assert import_labels.fn([r4], labelling_dir)["labelled"] == 0
    assert labelled_batches(labelling_dir) == [Path(done["label_files"][0])]


def test_a_file_that_is_not_an_export_names_itself(tmp_path: Path) -> None:
    bad = tmp_path / "export.json"
    bad.write_text('{"tasks": []}')
    with pytest.raises(ValueError, match=r"export\.json.*list of tasks"):
        load_export(bad)
    bad.write_text("not json")
    with pytest.raises(ValueError, match="export.json: not a readable"):
        load_export(bad)


def test_the_retrain_waits_for_enough_labels_then_claims_them_once(
    opened: tuple[Scope, list[dict[str, Any]]],
) -> None:
    scope, tasks = opened
    labelling_dir = scope.state.path("labelling_dir")
    rule = LabellingScope(min_labels=3, min_share=0.9, timeout_minutes=30)
    now = datetime.now(UTC)
    assert labels_ready(labelling_status(labelling_dir), rule, now) == (False, "no new labels")
    import_labels.fn([{**tasks[0], "annotations": annotated("call mom")}], labelling_dir)
    ready, why = labels_ready(labelling_status(labelling_dir), rule, now)
    assert not ready and "waiting" in why
    assert labels_ready(labelling_status(labelling_dir), rule, now + timedelta(minutes=31))[0]
    import_labels.fn(
        [{**t, "annotations": annotated("call mom")} for t in tasks[1:3]], labelling_dir
    )
    ready, why = labels_ready(labelling_status(labelling_dir), rule, now)
    assert ready and "min_labels" in why
    assert len(claim_labels.fn(labelling_dir, "retrain 1")) == 2
    assert labelling_status(labelling_dir)["pending_labels"] == 0  # never used twice
    # a label that arrives after the retrain started feeds the next one
    import_labels.fn([{**tasks[3], "annotations": annotated("call mom")}], labelling_dir)
    status = labelling_status(labelling_dir)
    assert status["pending_labels"] == 1 and status["open_batches"] == []
    assert labels_ready(status, rule.model_copy(update={"min_share": 0.5}), now)[0]
    assert claim_labels.fn(labelling_dir, "retrain 2") == status["pending_files"]


def test_the_simulated_labeller_writes_an_export_with_some_words_wrong(
    opened: tuple[Scope, list[dict[str, Any]]], tmp_path: Path
) -> None:
    scope, tasks = opened
    truth = {t["data"]["request_id"]: {"reference": "who is zarina okonkwo"} for t in tasks}
    path, labelled, wrong = label_through_files(scope, truth, 0.5, 3, tmp_path / "ex.json")
    assert labelled == 4 and 0 < wrong < 4
    texts = [t["annotations"][0]["result"][0]["value"]["text"][0] for t in load_export(path)]
    assert sum(t != "who is zarina okonkwo" for t in texts) == wrong
    assert all(len(t.split()) == 4 for t in texts)
    rng = np.random.default_rng(0)
    assert one_word_wrong("call mom", rng) != "call mom"
