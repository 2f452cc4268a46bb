"""The whole error analysis of one model: per-split metrics, slices, diagnosis, recommendations."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pandera.pandas as pa
from pandera.typing import DataFrame

from data_contracts.evaluation import Predictions, SliceMetrics
from tasks.evaluation.confusions import top_confusions, worst_utterances
from tasks.evaluation.diagnosis import Diagnosis, diagnose
from tasks.evaluation.recommendations import recommendations
from tasks.evaluation.slices import (
    HELD_OUT_KINDS,
    per_utterance,
    slice_table,
    split_overall,
    split_rows,
)

# the splits the bias/variance diagnosis reads (data_contracts.manifest.SPLITS lists them all)
DIAGNOSED_SPLITS: tuple[str, ...] = ("train", "dev", "test")
HELD_OUT_SPLIT = "cross_synth"  # whole synthesizers never heard in training


@dataclass
class ErrorAnalysis:
    """Everything the error analysis produced for one model."""

    overall: dict[str, dict[str, float]]
    slices: DataFrame[SliceMetrics]
    diagnosis: Diagnosis
    confusions: pd.DataFrame
    worst: pd.DataFrame
    recommendations: dict[str, Any]
    target_wer: float
    peer_wer: float | None = None
    split: str = "test"
    min_slice_n: int = 5
    # slices of the split of never-heard synthesizers (HELD_OUT_KINDS); empty when none held out
    held_out: pd.DataFrame | None = None

    def worst_slices(self, k: int = 5) -> pd.DataFrame:
        """The k slices (excluding overall) with the highest WER and at least min_slice_n rows."""
        rows = self.slices[
            (self.slices["slice"] != "overall") & (self.slices["n"] >= self.min_slice_n)
        ]
        return (
            rows.sort_values("wer", ascending=False, kind="stable").head(k).reset_index(drop=True)
        )


def _require_splits(predictions: pd.DataFrame) -> None:
    """Raise ValueError naming the diagnosed splits the predictions lack."""
    missing = [s for s in DIAGNOSED_SPLITS if not (predictions["split"] == s).any()]
    if missing:
        present = sorted(map(str, predictions["split"].unique()))
        raise ValueError(
            f"expected rows for splits {list(DIAGNOSED_SPLITS)}; missing {missing}, got {present}"
        )


@pa.check_types(lazy=True)
def analyse(
    predictions: DataFrame[Predictions],
    target_wer: float,
    peer_wer: float | None,
    current_policy: Mapping[str, Any],
    *,
    split: str = "test",
    k: int = 20,
    min_slice_n: int = 5,
    tolerance: float = 0.02,
) -> ErrorAnalysis:
    """Full error analysis: per-split metrics, slices, diagnosis, confusions, recommendations."""
    _require_splits(predictions)
    per = per_utterance(predictions)
    others = sorted(set(map(str, per["split"])) - set(DIAGNOSED_SPLITS))
    overall = split_overall(per, [*DIAGNOSED_SPLITS, *others])
    chosen = split_rows(predictions, split)
    unseen = per[(predictions["split"] == HELD_OUT_SPLIT).to_numpy()]
    slices = DataFrame[SliceMetrics](slice_table(per[(predictions["split"] == split).to_numpy()]))
    diagnosis = diagnose(
        overall["train"]["wer"],
        overall["dev"]["wer"],
        overall["test"]["wer"],
        target_wer,
        peer_wer,
        tolerance=tolerance,
    )
    return ErrorAnalysis(
        overall=overall,
        slices=slices,
        diagnosis=diagnosis,
        confusions=top_confusions(chosen, k=k),
        worst=worst_utterances(chosen, k=k),
        recommendations=recommendations(slices, diagnosis, current_policy, min_n=min_slice_n),
        target_wer=float(target_wer),
        peer_wer=None if peer_wer is None else float(peer_wer),
        split=split,
        min_slice_n=min_slice_n,
        held_out=slice_table(unseen, HELD_OUT_KINDS) if len(unseen) else None,
    )
