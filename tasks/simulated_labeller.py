"""The story's labeller: a separate actor that labels the open batches from the simulator's
ledger (tasks/simulation.py `write_ledger`), late and sometimes wrong, through what a person
uses: Label Studio's API when `labelling.label_studio_url` is set (an annotation per task),
else a Label Studio JSON export file imported the way `voicecycle label import FILE` does.
It never touches the prediction log or the batch files directly."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from prefect import task

from data_contracts.labels import transcription_result
from data_contracts.scoping import Scope
from tasks.labelling import TASKS, batches, labelled_ids, labelling_status, read_batch_state
from tasks.simulation import read_ledger

# a wrong word comes from here: plausible words a hurried labeller types instead
CONFUSIONS = ("the", "a", "weather", "music", "news", "play", "show", "call", "who", "is")


def one_word_wrong(text: str, rng: np.random.Generator) -> str:
    """`text` with one word replaced by a different one."""
    words = text.split()
    if not words:
        return text
    i = int(rng.integers(len(words)))
    choices = [w for w in CONFUSIONS if w != words[i]]
    words[i] = choices[int(rng.integers(len(choices)))]
    return " ".join(words)


def answers(
    tasks: list[tuple[Any, str]], truth: dict[str, dict[str, str]], error_rate: float, seed: int
) -> tuple[list[tuple[Any, str]], int]:
    """(task key, transcript) for every task the ledger knows, a share `error_rate` of them
    with one word wrong; and how many are wrong."""
    rng = np.random.default_rng(seed)
    out, wrong = [], 0
    for key, request_id in tasks:
        known = truth.get(request_id)
        if known is None or not str(known.get("reference", "")).strip():
            continue
        text = str(known["reference"])
        if rng.random() < error_rate:
            text, wrong = one_word_wrong(text, rng), wrong + 1
        out.append((key, text))
    return out, wrong


def _open_file_tasks(labelling_dir: Path) -> list[tuple[Any, str]]:
    """(task, request id) of every unlabelled task of the open batches' tasks.json."""
    open_ids = set(labelling_status(labelling_dir)["open_batches"])
    found: list[tuple[Any, str]] = []
    for batch in batches(labelling_dir):
        if batch.name not in open_ids or not (batch / TASKS).is_file():
            continue
        done = labelled_ids(batch)
        for t in json.loads((batch / TASKS).read_text()):
            if t["data"]["request_id"] not in done:
                found.append((t, str(t["data"]["request_id"])))
    return found


def label_through_files(
    scope: Scope, truth: dict[str, dict[str, str]], error_rate: float, seed: int, out: Path
) -> tuple[Path, int, int]:
    """Write a Label Studio JSON export with the labeller's annotations; (file, labelled, wrong)."""
    labelled, wrong = answers(
        _open_file_tasks(scope.state.path("labelling_dir")), truth, error_rate, seed
    )
    exported = [
        {**t, "annotations": [{"result": transcription_result(text), "was_cancelled": False}]}
        for t, text in labelled
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(exported, indent=1))
    return out, len(labelled), wrong


def label_through_api(
    scope: Scope, truth: dict[str, dict[str, str]], error_rate: float, seed: int
) -> tuple[int, int]:
    """Submit an annotation for each unlabelled task of the open batches' Label Studio
    projects; (labelled, wrong)."""
    from tasks.label_studio import client

    labelling_dir = scope.state.path("labelling_dir")
    open_ids = set(labelling_status(labelling_dir)["open_batches"])
    with client(scope) as ls:
        pending: list[tuple[Any, str]] = []
        for batch in batches(labelling_dir):
            project = read_batch_state(batch).get("label_studio_project")
            if batch.name not in open_ids or project is None:
                continue
            for t in ls.tasks(int(project)):
                if not t.get("total_annotations"):
                    pending.append((int(t["id"]), str(t["data"].get("request_id", ""))))
        labelled, wrong = answers(pending, truth, error_rate, seed)
        for task_id, text in labelled:
            ls.annotate(task_id, text)
    return len(labelled), wrong


@task(name="simulated-labeller")
def label_open_batches(
    scope: Scope,
    ledger: Path,
    delay_s: float,
    error_rate: float,
    seed: int,
    trigger: bool = True,
) -> dict[str, Any]:
    """After `delay_s`, label every open batch from the ledger's true transcripts (a share
    `error_rate` with one word wrong) through Label Studio or an export file, then import as
    `voicecycle label import` does (`trigger=False`: without starting the retrain); what it
    did and what the import returned."""
    from tasks.monitoring import import_labelled

    time.sleep(delay_s)
    truth = read_ledger(ledger)
    if scope.labelling.label_studio_url:
        labelled, wrong = label_through_api(scope, truth, error_rate, seed)
        imported = import_labelled.fn(scope, None, trigger)
    else:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        out = ledger.parent / f"label-studio-export-{stamp}-{seed}.json"
        path, labelled, wrong = label_through_files(scope, truth, error_rate, seed, out)
        imported = import_labelled.fn(scope, path, trigger)
    return {
        "labelled": labelled,
        "wrong": wrong,
        "delay_s": delay_s,
        "error_rate": error_rate,
        "import": imported,
    }
