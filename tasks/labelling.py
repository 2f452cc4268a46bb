"""The labelling loop: production samples out as a labelling batch, labelled batches back in
as a data source through the same contracts as every other source. Everything lives in the
scope's `state.labelling_dir`: one folder per batch, with `to_label.csv` and, once labelled,
`labelled.csv`."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from prefect import task

TO_LABEL = "to_label.csv"
LABELLED = "labelled.csv"


def select_for_labelling(
    log: pd.DataFrame, low_confidence: float, exported: set[str]
) -> pd.DataFrame:
    """Consented samples with audio not yet exported, least confident first.

    The window handed in is the drifted one, so all of it is worth labelling; the order puts
    the low-confidence samples (confidence below `low_confidence`) first for a person.
    """
    has_audio = log["consent"].astype(bool) & log["audio_path"].notna()
    fresh = ~log["request_id"].isin(exported)
    rows = log[has_audio & fresh]
    return (
        rows.assign(_low=rows["confidence"] >= low_confidence)
        .sort_values(["_low", "confidence"])
        .drop(columns="_low")
    )


def exported_ids(labelling_dir: Path) -> set[str]:
    """Request ids already sent out for labelling (never exported twice)."""
    ids: set[str] = set()
    for path in labelling_dir.glob(f"*/{TO_LABEL}"):
        ids |= set(pd.read_csv(path, dtype=str, keep_default_na=False)["utterance_id"])
    return ids


@task(name="export-labelling-batch")
def export_labelling_batch(
    log: pd.DataFrame,
    labelling_dir: Path,
    low_confidence: float = 0.8,
    simulated_labeller: bool = True,
) -> Path | None:
    """Copy the selected samples' audio into a batch folder with a manifest to label.

    With `simulated_labeller`, rows whose true transcript is known (the traffic simulator sent
    it) are labelled at once into labelled.csv; a person labels the rest by filling the
    transcript column and saving the file as labelled.csv.
    """
    rows = select_for_labelling(log, low_confidence, exported_ids(labelling_dir))
    if rows.empty:
        return None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    batch = labelling_dir / f"batch-{stamp}"
    (batch / "audio").mkdir(parents=True)
    records = []
    for row in rows.itertuples(index=False):
        src = Path(str(row.audio_path))
        if not src.is_file():
            continue  # purged by retention since it was logged
        shutil.copy2(src, batch / "audio" / f"{row.request_id}.wav")
        records.append(
            {
                "utterance_id": row.request_id,
                "audio_path": f"audio/{row.request_id}.wav",
                "transcript": "",
                "hint_model_transcript": row.transcript,
                "known_reference": row.reference if isinstance(row.reference, str) else "",
                "voice": f"production:{row.request_id}",
                "synthesizer": "production",
                "intent": "unknown",
                "entities": "",
                "era": "production",
                "scenario": row.scenario if isinstance(row.scenario, str) else "",
            }
        )
    if not records:
        shutil.rmtree(batch)
        return None
    to_label = pd.DataFrame(records)
    to_label.to_csv(batch / TO_LABEL, index=False)
    if simulated_labeller:
        labelled = to_label[to_label["known_reference"] != ""].copy()
        labelled["transcript"] = labelled["known_reference"]
        if len(labelled):
            labelled.drop(columns=["known_reference", "hint_model_transcript", "scenario"]).to_csv(
                batch / LABELLED, index=False
            )
    return batch


def labelled_batches(labelling_dir: Path) -> list[Path]:
    """Every labelled batch manifest in the labelling folder, oldest first."""
    return sorted(labelling_dir.glob(f"*/{LABELLED}"))
