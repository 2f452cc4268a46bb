"""Evaluation contracts: the per-clip predictions a model made and the slice metrics of them.

Predictions    one row per evaluated clip: the reference, the hypothesis and the clip's factors
SliceMetrics   WER/CER per slice value (an overall row first), what the gate compares
"""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from data_contracts.manifest import CONDITIONS, SPLITS


class Predictions(pa.DataFrameModel):
    """What a model transcribed on the evaluation clips; a missing transcript is empty."""

    utterance_id: Series[str] = pa.Field(unique=True, str_length={"min_value": 1})
    split: Series[str] = pa.Field(isin=list(SPLITS))
    reference: Series[str] = pa.Field(nullable=True)
    hypothesis: Series[str] = pa.Field(nullable=True)
    confidence: Series[float] = pa.Field(ge=0, le=1)
    condition: Series[str] = pa.Field(isin=list(CONDITIONS))
    snr_db: Series[float] = pa.Field(nullable=True)
    noise_type: Series[str]
    voice: Series[str]
    synthesizer: Series[str]
    duration_s: Series[float] = pa.Field(gt=0)
    intent: Series[str]
    era: Series[str]
    has_entity: Series[bool]

    class Config:
        strict = True
        coerce = True


class SliceMetrics(pa.DataFrameModel):
    """WER/CER per (slice, value); slice 'overall' with value 'all' is the whole split."""

    slice: Series[str]
    value: Series[str]
    n: Series[int] = pa.Field(ge=0)
    wer: Series[float] = pa.Field(ge=0)
    cer: Series[float] = pa.Field(ge=0)

    class Config:
        strict = True
        coerce = True

    # a scalar check: pandera's own multi-column `unique` fails on a frame whose index
    # repeats (as after pd.concat) with a pandas error instead of naming the duplicates
    @pa.dataframe_check(error="expected one row per (slice, value); got duplicates")
    @classmethod
    def one_row_per_slice_value(cls, df: pd.DataFrame) -> bool:
        return not bool(df.duplicated(["slice", "value"]).any())


PREDICTION_COLUMNS: tuple[str, ...] = tuple(Predictions.to_schema().columns)
SLICE_COLUMNS: tuple[str, ...] = tuple(SliceMetrics.to_schema().columns)
