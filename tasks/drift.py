"""Drift monitoring: compare a window of the prediction log with the champion's reference.

The reference is the champion's predictions on its held-out evaluation clips, with the same audio
features as the log. `drift_features` turns either table into the drift table, `run_drift_report`
scores every column with Evidently (one statistical test per column) and `decide` turns the share
of drifted columns into a retrain decision with a cooldown.

Default test: the normed Wasserstein distance (the distance between the two distributions in units
of the reference's standard deviation) at 0.3 for every numeric column. Evidently's own default
(K-S p < 0.05 up to 1000 reference rows, Wasserstein >= 0.1 above) flags some column in about a
third (K-S) to nearly all (Wasserstein 0.1) windows of 300 rows drawn from the reference's own
distribution, and K-S grows ever more sensitive to harmless differences as windows grow; an effect
size does not. With windows
of 300 rows or more, 0.3 did not fire on any of 4,000 stable column-windows in our measurements,
while in-car traffic moves SNR, low-band share and confidence by 2 to 3 reference deviations.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.typing import DataFrame

from data_contracts.drift import (
    DERIVED_COLUMNS,
    DRIFT_NUMERIC,
    DRIFT_TEXT,
    DriftFeatures,
    DriftSource,
)

LOG_COLUMNS: tuple[str, ...] = (
    *(c for c in DRIFT_NUMERIC if c not in DERIVED_COLUMNS),
    *DRIFT_TEXT,
)

DRIFT_METHOD = "wasserstein"  # Evidently's name for the normed Wasserstein distance
COLUMN_DRIFT_THRESHOLD = 0.3  # reference standard deviations; see the module docstring
DRIFT_SHARE_THRESHOLD = 0.5  # share of drifted columns that counts as dataset drift
MIN_WINDOW = 300  # below this the 0.3 threshold starts to false-alarm (measured: ~0.02% at 200)


def oov_share(transcripts: Iterable[str], lexicon: set[str]) -> list[float]:
    """Per transcript, the share of its words outside `lexicon` (0.0 for an empty transcript)."""
    if not lexicon:
        raise ValueError("expected a non-empty lexicon (the words the model's LM knows), got none")
    known = {w.lower() for w in lexicon}
    shares: list[float] = []
    for text in transcripts:
        if not isinstance(text, str):
            raise TypeError(f"expected each transcript as a string, got {type(text).__name__}")
        words = text.lower().split()
        shares.append(sum(w not in known for w in words) / len(words) if words else 0.0)
    return shares


@pa.check_types
def drift_features(log: DataFrame[DriftSource], lexicon: set[str]) -> DataFrame[DriftFeatures]:
    """The drift table of a prediction-log (or reference) frame: DRIFT_NUMERIC + transcript."""
    table = pd.DataFrame(index=range(len(log)))
    for column in DRIFT_NUMERIC:
        if column in DERIVED_COLUMNS:
            continue
        values = pd.to_numeric(log[column], errors="coerce").to_numpy(dtype=float)
        table[column] = np.where(np.isfinite(values), values, np.nan)
    transcripts = log["transcript"].fillna("").astype(str).tolist()
    table["oov_share"] = oov_share(transcripts, lexicon)
    table["transcript"] = transcripts
    return DataFrame[DriftFeatures](table[[*DRIFT_NUMERIC, *DRIFT_TEXT]])


@dataclass(frozen=True)
class DriftResult:
    """Per-column drift of one window against the reference, and the share that drifted."""

    drift_share: float
    drifted_columns: tuple[str, ...]
    n_reference: int
    n_current: int
    per_column: dict[str, dict[str, Any]]  # name -> {"drifted": bool, "score": float, "method"}
    html_path: Path | None
    evaluated: bool = True  # False: the window was below the minimum, Evidently did not run


def _column_thresholds(
    threshold: float | Mapping[str, float], columns: Iterable[str]
) -> dict[str, float]:
    """One threshold per numeric column: a float for all, or a mapping overriding the default."""
    columns = list(columns)
    if isinstance(threshold, Mapping):
        unknown = sorted(set(threshold) - set(columns))
        if unknown:
            raise ValueError(f"expected thresholds for columns among {columns}, got {unknown}")
        return {c: float(threshold.get(c, COLUMN_DRIFT_THRESHOLD)) for c in columns}
    return {c: float(threshold) for c in columns}


def _parse_snapshot(
    snapshot: dict[str, Any], columns: list[str]
) -> tuple[float, dict[str, dict[str, Any]]]:
    """The DriftedColumnsCount share and the per-column results of an Evidently snapshot dict."""
    share: float | None = None
    scores: dict[str, float] = {}
    for metric in snapshot.get("metrics", []):
        kind = str(metric.get("config", {}).get("type", ""))
        if kind.endswith("DriftedColumnsCount"):
            share = float(metric["value"]["share"])
        elif kind.endswith("ValueDrift"):
            value = metric.get("value")
            scores[metric["config"]["column"]] = math.nan if value is None else float(value)
    per_column: dict[str, dict[str, Any]] = {}
    for test in snapshot.get("tests", []):
        params = test.get("metric_config", {}).get("params", {})
        if str(params.get("type", "")).endswith("ValueDrift") and params.get("column") in scores:
            column = params["column"]
            per_column[column] = {
                "drifted": test.get("status") == "FAIL",
                "score": scores[column],
                "method": str(params.get("method")),
                "threshold": params.get("threshold"),
            }
    missing = [c for c in columns if c not in per_column]
    if share is None or missing:
        raise RuntimeError(
            "expected a DriftedColumnsCount metric and a ValueDrift metric and test per column in "
            f"the Evidently snapshot; share={share}, columns without results: {missing}"
        )
    return share, {c: per_column[c] for c in columns}


@pa.check_types
def run_drift_report(
    reference: DataFrame[DriftFeatures],
    current: DataFrame[DriftFeatures],
    html_path: Path | None,
    include_text: bool = False,
    column_drift_threshold: float | Mapping[str, float] = COLUMN_DRIFT_THRESHOLD,
    method: str = DRIFT_METHOD,
    drift_share_threshold: float = DRIFT_SHARE_THRESHOLD,
) -> DriftResult:
    """Score each drift column of `current` against `reference` with Evidently; write the HTML.

    `method` and `column_drift_threshold` (a float, or a per-column mapping) apply to the numeric
    columns; the transcript column (only with `include_text`, slow) keeps Evidently's
    domain-classifier test. `drift_share_threshold` only sets the verdict shown in the HTML.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    numeric = list(DRIFT_NUMERIC)
    text = list(DRIFT_TEXT) if include_text else []
    columns = numeric + text
    thresholds = _column_thresholds(column_drift_threshold, numeric)

    definition = DataDefinition(numerical_columns=numeric, text_columns=text)

    def dataset(frame: pd.DataFrame) -> Any:
        """The drift columns of `frame` as an Evidently Dataset."""
        data = frame[columns].reset_index(drop=True)
        data[numeric] = data[numeric].apply(pd.to_numeric, errors="coerce").astype(float)
        if text:
            data[text] = data[text].fillna("").astype(str)
        return Dataset.from_pandas(data, data_definition=definition)

    preset = DataDriftPreset(
        columns=columns,
        drift_share=drift_share_threshold,
        per_column_method={c: method for c in numeric},
        per_column_threshold=thresholds,
    )
    # a constant column (oov_share is all 0 under a lexicon decoder) makes numpy warn in Evidently
    with np.errstate(divide="ignore", invalid="ignore"):
        snapshot = Report([preset], include_tests=True).run(
            reference_data=dataset(reference), current_data=dataset(current)
        )
        share, per_column = _parse_snapshot(snapshot.dict(), columns)
        if html_path is not None:
            html_path = Path(html_path)
            html_path.parent.mkdir(parents=True, exist_ok=True)
            snapshot.save_html(str(html_path))
    return DriftResult(
        drift_share=share,
        drifted_columns=tuple(c for c in columns if per_column[c]["drifted"]),
        n_reference=len(reference),
        n_current=len(current),
        per_column=per_column,
        html_path=html_path,
    )


@dataclass(frozen=True)
class DriftDecision:
    """Whether a window drifted and whether to retrain now, with a human-readable reason."""

    drift: bool
    reason: str
    retrain: bool
    drift_share: float
    window: int


def decide(
    result: DriftResult,
    drift_share_threshold: float,
    min_window: int,
    last_trigger: datetime | None,
    now: datetime,
    cooldown_minutes: float,
) -> DriftDecision:
    """Drift when the drifted-column share reaches the threshold; retrain unless cooling down."""
    if not 0 < drift_share_threshold <= 1:
        raise ValueError(f"expected drift_share_threshold in (0, 1], got {drift_share_threshold}")
    if min_window < 1 or cooldown_minutes < 0:
        raise ValueError(
            f"expected min_window >= 1 and cooldown_minutes >= 0, got {min_window} "
            f"and {cooldown_minutes}"
        )
    if last_trigger is not None and (last_trigger.tzinfo is None) != (now.tzinfo is None):
        raise ValueError(
            f"expected last_trigger and now both timezone-aware or both naive, got "
            f"{last_trigger.isoformat()} and {now.isoformat()}"
        )
    n, share = result.n_current, result.drift_share
    if n < min_window:
        reason = f"no decision: window of {n} requests is below the minimum of {min_window}"
        return DriftDecision(False, reason, False, share, n)
    summary = f"{share:.0%} of columns drifted (threshold {drift_share_threshold:.0%})"
    if share < drift_share_threshold:
        return DriftDecision(False, f"no drift: {summary}", False, share, n)
    summary += f": {', '.join(result.drifted_columns)}"
    if last_trigger is not None:
        until = last_trigger + timedelta(minutes=cooldown_minutes)
        if now < until:
            reason = f"drift: {summary}; cooling down until {until.isoformat()}"
            return DriftDecision(True, reason, False, share, n)
    return DriftDecision(True, f"drift: {summary}; retrain", True, share, n)


def window(log: pd.DataFrame, size: int) -> pd.DataFrame:
    """The most recent `size` rows of `log` by ts, oldest first."""
    if "ts" not in log.columns:
        raise ValueError(f"the prediction log is missing columns ['ts']; got {list(log.columns)}")
    if size < 1:
        raise ValueError(f"expected a window size >= 1, got {size}")
    return log.sort_values("ts", kind="stable").tail(size).reset_index(drop=True)
