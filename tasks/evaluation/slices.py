"""Slice metrics: WER/CER per value of each factor a clip carries (condition, SNR, voice, ...)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd
import pandera.pandas as pa
from pandera.typing import DataFrame

from data_contracts.evaluation import SLICE_COLUMNS, Predictions, SliceMetrics
from tasks.evaluation.metrics import edit_counts, error_rate, pair_up

SLICE_KINDS: tuple[str, ...] = (
    "condition",
    "snr_bucket",
    "noise_type",
    "voice",
    "synthesizer",
    "engine",
    "duration_bucket",
    "intent",
    "era",
    "has_entity",
)
# slices of the never-heard synthesizers (the cross_synth split): which engine, in which condition
HELD_OUT_KINDS: tuple[str, ...] = ("synthesizer", "synthesizer_condition", "voice")
SNR_BUCKETS: tuple[str, ...] = ("<0 dB", "0-5 dB", "5-10 dB", "10-20 dB", ">=20 dB", "clean")
DURATION_BUCKETS: tuple[str, ...] = ("<1.5 s", "1.5-3 s", "3-5 s", ">=5 s")
UNKNOWN = "unknown"


def snr_bucket(condition: str, snr_db: float) -> str:
    """Bucket label for one utterance's SNR; audio without added noise (clean, and the
    telephone copies of clean clips) gets "clean"."""
    if condition in ("clean", "telephone"):
        return "clean"
    if snr_db is None or pd.isna(snr_db):
        return UNKNOWN
    if snr_db < 0:
        return "<0 dB"
    if snr_db < 5:
        return "0-5 dB"
    if snr_db < 10:
        return "5-10 dB"
    if snr_db < 20:
        return "10-20 dB"
    return ">=20 dB"


def duration_bucket(duration_s: float) -> str:
    """Bucket label for an utterance duration in seconds."""
    if duration_s is None or pd.isna(duration_s):
        return UNKNOWN
    if duration_s < 1.5:
        return "<1.5 s"
    if duration_s < 3:
        return "1.5-3 s"
    if duration_s < 5:
        return "3-5 s"
    return ">=5 s"


def per_utterance(predictions: pd.DataFrame) -> pd.DataFrame:
    """Copy of predictions with per-utterance edit counts, WER and bucket columns."""
    refs, hyps = pair_up(list(predictions["reference"]), list(predictions["hypothesis"]))
    per = predictions.copy()
    per["word_errors"], per["ref_words"] = edit_counts(refs, hyps, unit="word")
    per["char_errors"], per["ref_chars"] = edit_counts(refs, hyps, unit="char")
    per["utt_wer"] = [
        error_rate(e, n) for e, n in zip(per["word_errors"], per["ref_words"], strict=True)
    ]
    per["snr_bucket"] = [
        snr_bucket(c, s) for c, s in zip(per["condition"], per["snr_db"], strict=True)
    ]
    per["duration_bucket"] = [duration_bucket(d) for d in per["duration_s"]]
    per["engine"] = [engine_label(str(s)) for s in per["synthesizer"]]
    per["synthesizer_condition"] = per["synthesizer"].astype(str) + " / " + per["condition"]
    return per


def engine_label(synthesizer: str) -> str:
    """The engine of a synthesizer label ("festival-hts" -> "festival"); others unchanged."""
    return synthesizer.split("-", 1)[0] if synthesizer else UNKNOWN


def _value_order(kind: str, values: Iterable[str]) -> list[str]:
    """Display order for one slice kind: bucket order for buckets, alphabetical otherwise."""
    values = set(values)
    canonical = {"snr_bucket": SNR_BUCKETS, "duration_bucket": DURATION_BUCKETS}.get(kind)
    if canonical is None:
        return sorted(values)
    return [v for v in canonical if v in values] + sorted(values - set(canonical))


def _rates(rows: pd.DataFrame | pd.Series) -> dict[str, float]:
    """Corpus WER and CER of summed edit counts."""
    return {
        "wer": error_rate(rows["word_errors"].sum(), rows["ref_words"].sum()),
        "cer": error_rate(rows["char_errors"].sum(), rows["ref_chars"].sum()),
    }


def split_overall(per: pd.DataFrame, splits: Iterable[str]) -> dict[str, dict[str, float]]:
    """WER, CER and clip count of each named split of a per-utterance frame."""
    overall: dict[str, dict[str, float]] = {}
    for name in splits:
        rows = per[per["split"] == name]
        overall[name] = {**_rates(rows), "n": int(len(rows))}
    return overall


def slice_table(per: pd.DataFrame, kinds: Iterable[str] = SLICE_KINDS) -> pd.DataFrame:
    """Slice metrics table (overall first) from a per-utterance frame."""
    sums = ["word_errors", "ref_words", "char_errors", "ref_chars"]
    records: list[dict[str, Any]] = [
        {"slice": "overall", "value": "all", "n": len(per), **_rates(per)}
    ]
    for kind in kinds:
        keys = per[kind].astype(str)
        grouped = per[sums].groupby(keys).sum()
        counts = keys.value_counts()
        for value in _value_order(kind, grouped.index):
            records.append(
                {
                    "slice": kind,
                    "value": value,
                    "n": int(counts[value]),
                    **_rates(grouped.loc[value]),
                }
            )
    return pd.DataFrame.from_records(records, columns=list(SLICE_COLUMNS))


def split_rows(predictions: pd.DataFrame, split: str) -> pd.DataFrame:
    """Rows of one split, or ValueError naming the splits that exist."""
    rows = predictions[predictions["split"] == split]
    if rows.empty:
        present = sorted(map(str, predictions["split"].unique()))
        raise ValueError(f"expected rows with split == {split!r}; splits present: {present}")
    return rows


@pa.check_types(lazy=True)
def slice_metrics(
    predictions: DataFrame[Predictions], split: str = "test"
) -> DataFrame[SliceMetrics]:
    """WER/CER per slice value (plus an overall row) on one split."""
    return DataFrame[SliceMetrics](slice_table(per_utterance(split_rows(predictions, split))))
