"""Readers for the manifest formats people bring: NeMo JSONL, Common Voice TSV and plain CSV.

Each reader maps its format onto the RawManifest contract; nothing is dropped here. Rows that
cannot be used are quarantined later by ingestion, with their reason.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import pandas as pd
import pandera.pandas as pa
from pandera.typing import DataFrame

from data_contracts.manifest import RawManifest

ManifestKind = Literal["nemo", "commonvoice", "csv"]
RAW_COLUMNS = list(RawManifest.to_schema().columns)
_OPTIONAL_DEFAULTS = {
    "voice": "",
    "synthesizer": "human",
    "intent": "unknown",
    "entities": "",
    "era": "unknown",
}


class ManifestError(ValueError):
    """A manifest that cannot be read at all; the message names the file and what is wrong."""


def detect_kind(path: Path) -> ManifestKind:
    """Guess the manifest format from the file extension."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return "nemo"
    if suffix == ".tsv":
        return "commonvoice"
    if suffix == ".csv":
        return "csv"
    raise ManifestError(
        f"cannot tell the format of manifest {path}: expected .jsonl/.json (NeMo), "
        f".tsv (Common Voice) or .csv, got {suffix or 'no extension'!r}"
    )


def _require(df: pd.DataFrame, columns: list[str], path: Path, kind: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ManifestError(
            f"manifest {path} ({kind}) lacks required column(s) {missing}; "
            f"it has {sorted(map(str, df.columns))}"
        )


def _read_nemo(path: Path) -> pd.DataFrame:
    rows = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ManifestError(f"manifest {path} line {lineno} is not JSON: {exc.msg}") from exc
        if not isinstance(item, dict):
            raise ManifestError(f"manifest {path} line {lineno} is not a JSON object")
        rows.append(item)
    df = pd.DataFrame(rows)
    if df.empty:
        raise ManifestError(f"manifest {path} has no rows")
    _require(df, ["audio_filepath", "text"], path, "NeMo JSONL")
    out = pd.DataFrame({"audio_path": df["audio_filepath"], "transcript": df["text"]})
    out["utterance_id"] = df["utterance_id"] if "utterance_id" in df else None
    for col in ("voice", "speaker"):
        if col in df and "voice" not in out:
            out["voice"] = df[col]
    for col in _OPTIONAL_DEFAULTS:
        if col in df and col not in out:
            out[col] = df[col]
    return out


def _read_commonvoice(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=3)
    _require(df, ["path", "sentence"], path, "Common Voice TSV")
    clips = path.parent / "clips"
    audio = [
        str(Path("clips") / p) if (clips / p).exists() or not (path.parent / p).exists() else p
        for p in df["path"]
    ]
    out = pd.DataFrame({"audio_path": audio, "transcript": df["sentence"]})
    out["utterance_id"] = None
    if "client_id" in df:
        out["voice"] = df["client_id"]
    return out


def _read_csv(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    _require(df, ["audio_path", "transcript"], path, "CSV")
    out = df.copy()
    if "utterance_id" not in out:
        out["utterance_id"] = None
    if "voice" not in out and "speaker" in out:
        out["voice"] = out["speaker"]
    return out


@pa.check_types(lazy=True)
def read_manifest(
    path: Path, source: str, kind: ManifestKind | None = None
) -> DataFrame[RawManifest]:
    """Read a manifest into the RawManifest contract (paths stay as written, relative to it)."""
    if not path.is_file():
        raise ManifestError(f"manifest not found: {path}")
    kind = kind or detect_kind(path)
    try:
        readers = {"nemo": _read_nemo, "commonvoice": _read_commonvoice, "csv": _read_csv}
        df = readers[kind](path)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ManifestError(f"manifest {path} cannot be parsed as {kind}: {exc}") from exc
    if df.empty:
        raise ManifestError(f"manifest {path} has no rows")
    df = df.copy()
    ids = df["utterance_id"]
    derived = [Path(str(p)).stem for p in df["audio_path"]]
    df["utterance_id"] = [
        str(i) if isinstance(i, str) and i.strip() else d for i, d in zip(ids, derived, strict=True)
    ]
    for col, default in _OPTIONAL_DEFAULTS.items():
        if col not in df:
            df[col] = default
        df[col] = df[col].fillna(default).astype(str)
    # with no speaker information each clip is its own voice: no leakage, but say so downstream
    no_voice = df["voice"].str.strip() == ""
    df.loc[no_voice, "voice"] = source + ":" + df.loc[no_voice, "utterance_id"]
    df["source"] = source
    df["transcript"] = df["transcript"].where(df["transcript"].notna(), None)
    df["audio_path"] = df["audio_path"].fillna("").astype(str)
    return df[RAW_COLUMNS].reset_index(drop=True)
