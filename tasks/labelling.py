"""The labelling loop: production samples out as a labelling batch (Label Studio tasks), a
Label Studio JSON export back in as labels, which a retrain ingests as a CSV source.

Everything lives in the scope's `state.labelling_dir`, one folder per batch:
`batch.json` (when it opened, its tasks, its Label Studio project), `audio/<request_id>.wav`,
`tasks.json` (Label Studio tasks, least confident first), `to_label.csv` (the same as a CSV
for a person without Label Studio), and one `labels-NNN.csv` per import that brought new
labels (append-only: a label is never rewritten or lost) with its `quarantine-NNN.csv`.
`claims.json` at the top records which label files a retrain has taken, so labels that arrive
after a retrain started feed the next one and none counts twice. A person's hand-filled
`labelled.csv` (the older CSV round) still counts as a label file.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from pandera.typing import DataFrame
from prefect import task
from pydantic import ValidationError

from data_contracts.labels import (
    LABELLED_COLUMNS,
    QUARANTINE_COLUMNS,
    Annotation,
    ExportedTask,
    LabelledRows,
    LabelQuarantine,
    annotation_text,
    transcription_result,
)
from data_contracts.scoping import LabellingScope

TO_LABEL = "to_label.csv"
TASKS = "tasks.json"
BATCH = "batch.json"
LABELLED = "labelled.csv"  # a person's hand-filled CSV (to_label.csv with transcripts)
CLAIMS = "claims.json"
LOCAL_FILES_PREFIX = "/data/local-files/?d="


@dataclass(frozen=True)
class Batch:
    """An opened labelling batch: its id, folder and number of tasks."""

    batch_id: str
    path: Path
    n_tasks: int


def select_for_labelling(
    log: pd.DataFrame, exported: set[str], limit: int | None = None
) -> pd.DataFrame:
    """Consented samples with audio not yet exported, least confident first (at most `limit`)."""
    has_audio = log["consent"].astype(bool) & log["audio_path"].notna()
    fresh = ~log["request_id"].isin(exported)
    rows = log[has_audio & fresh].sort_values("confidence", kind="stable")
    return rows if limit is None else rows.head(limit)


def exported_ids(labelling_dir: Path) -> set[str]:
    """Request ids already sent out for labelling (never exported twice)."""
    ids: set[str] = set()
    for path in labelling_dir.glob(f"*/{TO_LABEL}"):
        ids |= set(pd.read_csv(path, dtype=str, keep_default_na=False)["utterance_id"])
    return ids


def audio_url(settings: LabellingScope, batch_id: str, request_id: str) -> str:
    """Where Label Studio fetches a task's audio (see `LabellingScope.audio_base_url`)."""
    relative = f"{batch_id}/audio/{request_id}.wav"
    if settings.audio_base_url:
        return settings.audio_base_url.rstrip("/") + "/" + relative
    return LOCAL_FILES_PREFIX + relative


def labelling_task(
    row: Any, batch_id: str, settings: LabellingScope, model_version: str
) -> dict[str, Any]:
    """One Label Studio task: the audio URL, the ids, and the model's transcript as a
    pre-annotation whose `score` is its confidence."""
    confidence = round(float(row.confidence), 4)
    return {
        "data": {
            "audio": audio_url(settings, batch_id, str(row.request_id)),
            "request_id": str(row.request_id),
            "batch": batch_id,
            "model_transcript": str(row.transcript),
            "confidence": confidence,
        },
        "predictions": [
            {
                "model_version": model_version,
                "score": confidence,
                "result": transcription_result(str(row.transcript)),
            }
        ],
    }


def _to_label_row(request_id: str, model_transcript: str) -> dict[str, str]:
    return {
        "utterance_id": request_id,
        "audio_path": f"audio/{request_id}.wav",
        "transcript": "",
        "voice": f"production:{request_id}",
        "synthesizer": "production",
        "intent": "unknown",
        "entities": "",
        "era": "production",
        "hint_model_transcript": model_transcript,
    }


def stored_audio(logged: str, audio_dir: Path) -> Path | None:
    """The file of a logged audio path: as logged (relative: under `audio_dir`), else by its
    name in `audio_dir` (the workspace moved since); None when neither exists (purged)."""
    for path in (audio_dir / logged, audio_dir / Path(logged).name):
        if path.is_file():
            return path
    return None


@task(name="open-labelling-batch")
def open_labelling_batch(
    log: pd.DataFrame,
    labelling_dir: Path,
    settings: LabellingScope,
    audio_dir: Path,
    reason: str = "",
) -> Batch | None:
    """Copy the selected samples' audio into a new batch folder with its Label Studio tasks
    (tasks.json), a CSV to fill by hand (to_label.csv) and its state (batch.json).

    `audio_dir` is where the service keeps consented audio (`state.prediction_audio_dir`):
    a logged path is found there by its file name too, so a moved workspace keeps its audio."""
    rows = select_for_labelling(log, exported_ids(labelling_dir), settings.max_batch)
    if rows.empty:
        return None
    opened = datetime.now(UTC)
    batch_id = f"batch-{opened:%Y%m%dT%H%M%S%f}"
    batch = labelling_dir / batch_id
    (batch / "audio").mkdir(parents=True)
    tasks, records = [], []
    for row in rows.itertuples(index=False):
        src = stored_audio(str(row.audio_path), audio_dir)
        if src is None:
            continue  # purged by retention since it was logged
        shutil.copy2(src, batch / "audio" / f"{row.request_id}.wav")
        model_version = str(getattr(row, "model_version", ""))
        tasks.append(labelling_task(row, batch_id, settings, model_version))
        records.append(_to_label_row(str(row.request_id), str(row.transcript)))
    if not records:
        shutil.rmtree(batch)
        return None
    pd.DataFrame(records).to_csv(batch / TO_LABEL, index=False)
    (batch / TASKS).write_text(json.dumps(tasks, indent=1))
    state = {"batch_id": batch_id, "opened_at": opened.isoformat(), "n_tasks": len(tasks)}
    (batch / BATCH).write_text(json.dumps({**state, "reason": reason}, indent=1))
    return Batch(batch_id, batch, len(tasks))


def read_batch_state(batch: Path) -> dict[str, Any]:
    """A batch's batch.json (an older CSV-only batch gets one from its to_label.csv)."""
    path = batch / BATCH
    if path.is_file():
        state: dict[str, Any] = json.loads(path.read_text())
        return state
    n = len(pd.read_csv(batch / TO_LABEL, dtype=str)) if (batch / TO_LABEL).is_file() else 0
    opened = datetime.fromtimestamp(batch.stat().st_mtime, UTC).isoformat()
    return {"batch_id": batch.name, "opened_at": opened, "n_tasks": n}


def write_batch_state(batch: Path, state: dict[str, Any]) -> None:
    (batch / BATCH).write_text(json.dumps(state, indent=1))


def batches(labelling_dir: Path) -> list[Path]:
    """Every batch folder, oldest first."""
    return sorted(p.parent for p in labelling_dir.glob(f"batch-*/{TO_LABEL}"))


def labelled_batches(labelling_dir: Path) -> list[Path]:
    """Every label file (labels-NNN.csv of an import, or a hand-filled labelled.csv), in order."""
    found = [*labelling_dir.glob("*/labels-*.csv"), *labelling_dir.glob(f"*/{LABELLED}")]
    return sorted(found, key=lambda p: (p.parent.name, p.name))


def labelled_ids(batch: Path) -> set[str]:
    """Request ids of a batch that already have a label."""
    ids: set[str] = set()
    for path in [*batch.glob("labels-*.csv"), batch / LABELLED]:
        if path.is_file():
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
            ids |= set(frame.loc[frame["transcript"].str.strip() != "", "utterance_id"])
    return ids


def _latest(annotations: list[Annotation]) -> Annotation | None:
    """The most recent annotation that was submitted (not skipped)."""
    kept = [a for a in annotations if not a.was_cancelled]
    if not kept:
        return None
    return max(enumerate(kept), key=lambda ia: (ia[1].updated_at or ia[1].created_at or "", ia[0]))[
        1
    ]


def parse_export(
    exported: list[Any], labelling_dir: Path
) -> tuple[dict[str, list[dict[str, str]]], list[dict[str, str | None]]]:
    """Label Studio's JSON export -> new label rows per batch, and the quarantined tasks with
    their reasons (malformed, unknown batch, audio missing or outside its batch folder, no
    annotation, skipped, empty transcription). A task already labelled is left out: a label
    is never imported twice."""
    rows: dict[str, list[dict[str, str]]] = {}
    quarantined: list[dict[str, str | None]] = []
    root = labelling_dir.resolve()
    seen: set[tuple[str, str]] = set()
    known: dict[str, set[str]] = {}
    for position, raw in enumerate(exported):
        where = str(raw.get("id", f"#{position}")) if isinstance(raw, dict) else f"#{position}"

        def quarantine(reason: str, request_id: str | None = None, _where: str = where) -> None:
            quarantined.append({"task": _where, "request_id": request_id, "reason": reason})

        try:
            task_ = ExportedTask.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "task"
            quarantine(f"malformed task: {field}: {first['msg']}")
            continue
        rid, batch_id = task_.data.request_id, task_.data.batch
        batch = (root / batch_id).resolve()
        audio = (batch / "audio" / f"{rid}.wav").resolve()
        if not batch.is_relative_to(root) or not audio.is_relative_to(batch):
            quarantine("audio path outside the labelling folder", rid)
            continue
        if not (batch / TO_LABEL).is_file():
            quarantine(f"unknown batch {batch_id!r}", rid)
            continue
        if not audio.is_file():
            quarantine(f"audio missing: {batch_id}/audio/{rid}.wav", rid)
            continue
        if not task_.annotations:
            quarantine("no annotation", rid)
            continue
        chosen = _latest(task_.annotations)
        if chosen is None:
            quarantine("skipped by the annotator (was_cancelled)", rid)
            continue
        try:
            text = annotation_text(chosen)
        except ValidationError:
            quarantine("malformed annotation: the transcription value has no text list", rid)
            continue
        if not text:
            quarantine("empty transcription", rid)
            continue
        if batch_id not in known:
            known[batch_id] = labelled_ids(batch)
        if rid in known[batch_id] or (batch_id, rid) in seen:
            continue
        seen.add((batch_id, rid))
        row = _to_label_row(rid, "")
        row.pop("hint_model_transcript")
        rows.setdefault(batch_id, []).append({**row, "transcript": " ".join(text.split())})
    return rows, quarantined


def load_export(path: Path) -> list[Any]:
    """A Label Studio JSON export file: a JSON list of tasks (ValueError naming the file)."""
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable Label Studio JSON export: {exc}") from None
    if not isinstance(loaded, list):
        raise ValueError(
            f"{path}: a Label Studio JSON export is a list of tasks, got a {type(loaded).__name__}"
        )
    return loaded


def _next_file(batch: Path, stem: str) -> Path:
    n = len(list(batch.glob(f"{stem}-*.csv")))
    while (batch / f"{stem}-{n:03d}.csv").exists():
        n += 1
    return batch / f"{stem}-{n:03d}.csv"


@task(name="import-labels")
def import_labels(exported: list[Any], labelling_dir: Path) -> dict[str, Any]:
    """Write the new labels of an export as labels-NNN.csv per batch (LabelledRows) and the
    quarantined tasks as quarantine-NNN.csv (LabelQuarantine); counts and files."""
    rows, quarantined = parse_export(exported, labelling_dir)
    files: list[str] = []
    for batch_id, batch_rows in rows.items():
        frame = DataFrame[LabelledRows](LabelledRows.validate(pd.DataFrame(batch_rows)))
        path = _next_file(labelling_dir / batch_id, "labels")
        frame[list(LABELLED_COLUMNS)].to_csv(path, index=False)
        files.append(str(path))
    quarantine_file = None
    if quarantined:
        frame_q = LabelQuarantine.validate(pd.DataFrame(quarantined, columns=QUARANTINE_COLUMNS))
        labelling_dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        quarantine_path = labelling_dir / f"quarantine-{stamp}.csv"
        frame_q.to_csv(quarantine_path, index=False)
        quarantine_file = str(quarantine_path)
    return {
        "tasks": len(exported),
        "labelled": sum(len(r) for r in rows.values()),
        "quarantined": quarantined,
        "label_files": files,
        "quarantine_file": quarantine_file,
    }


def open_projects(labelling_dir: Path) -> list[int]:
    """The Label Studio projects of the batches that are still open."""
    open_ids = set(labelling_status(labelling_dir)["open_batches"])
    found = []
    for batch in batches(labelling_dir):
        project = read_batch_state(batch).get("label_studio_project")
        if batch.name in open_ids and project is not None:
            found.append(int(project))
    return found


def read_claims(labelling_dir: Path) -> dict[str, dict[str, str]]:
    path = labelling_dir / CLAIMS
    return json.loads(path.read_text()) if path.is_file() else {}


def _count(path: Path) -> int:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    return int((frame["transcript"].str.strip() != "").sum()) if "transcript" in frame else 0


def labelling_status(labelling_dir: Path) -> dict[str, Any]:
    """Every batch (tasks, labelled, open), and the labels no retrain has taken yet."""
    claims = read_claims(labelling_dir)
    listed = []
    for batch in batches(labelling_dir):
        state = read_batch_state(batch)
        labelled = len(labelled_ids(batch))
        listed.append(
            {
                "batch_id": batch.name,
                "opened_at": state["opened_at"],
                "tasks": int(state["n_tasks"]),
                "labelled": labelled,
                "open": labelled < int(state["n_tasks"]),
                "label_studio_project": state.get("label_studio_project"),
            }
        )
    pending = [p for p in labelled_batches(labelling_dir) if str(p.resolve()) not in claims]
    return {
        "batches": listed,
        "open_batches": [b["batch_id"] for b in listed if b["open"]],
        "pending_files": [str(p) for p in pending],
        "pending_labels": sum(_count(p) for p in pending),
    }


def labels_ready(
    status: dict[str, Any], settings: LabellingScope, now: datetime
) -> tuple[bool, str]:
    """The retrain rule: enough new labels (`min_labels`, or `min_share` of the batches with
    new labels), or the oldest batch with new labels open past `timeout_minutes`."""
    pending = int(status["pending_labels"])
    if pending == 0:
        return False, "no new labels"
    if pending >= settings.min_labels:
        return True, f"{pending} new labels >= labelling.min_labels {settings.min_labels}"
    pending_batches = {Path(f).parent.name for f in status["pending_files"]}
    involved = [b for b in status["batches"] if b["batch_id"] in pending_batches]
    tasks = sum(b["tasks"] for b in involved) or 1
    share = sum(b["labelled"] for b in involved) / tasks
    if share >= settings.min_share:
        return (
            True,
            f"{share:.0%} of the batch labelled >= labelling.min_share {settings.min_share}",
        )
    opened = min((datetime.fromisoformat(b["opened_at"]) for b in involved), default=now)
    minutes = (now - opened).total_seconds() / 60
    if minutes >= settings.timeout_minutes:
        return True, (
            f"labelling.timeout_minutes {settings.timeout_minutes:g} passed "
            f"({minutes:.0f} min): retraining on the {pending} labels in"
        )
    return False, (
        f"waiting for labels: {pending} new, {share:.0%} of the batch, {minutes:.0f} of "
        f"{settings.timeout_minutes:g} min"
    )


@task(name="claim-labels")
def claim_labels(labelling_dir: Path, by: str) -> list[str]:
    """Mark every label file no retrain has taken as taken by `by`; the files claimed."""
    claims = read_claims(labelling_dir)
    taken = [str(p.resolve()) for p in labelled_batches(labelling_dir)]
    new = [p for p in taken if p not in claims]
    if new:
        at = datetime.now(UTC).isoformat()
        claims.update({p: {"by": by, "at": at} for p in new})
        labelling_dir.mkdir(parents=True, exist_ok=True)
        tmp = labelling_dir / (CLAIMS + ".tmp")
        tmp.write_text(json.dumps(claims, indent=1))
        tmp.replace(labelling_dir / CLAIMS)
    return new
