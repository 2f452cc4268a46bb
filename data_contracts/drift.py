"""The drift contracts: what monitoring reads from the prediction log (or the champion's
reference) and the drift features table it scores with Evidently, one row per request.

`DriftSource` is the part of a prediction-log window (or of the reference CSV, which has the
same audio features) that drift is computed from; `DriftFeatures` is the table itself, with
the derived `oov_share` (words outside the champion's lexicon).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

DRIFT_NUMERIC: tuple[str, ...] = (
    "duration_s",
    "rms_dbfs",
    "snr_db_estimate",
    "spectral_centroid_hz",
    "spectral_bandwidth_hz",
    "spectral_rolloff_hz",
    "low_band_share",
    "silence_share",
    "confidence",
    "n_words",
    "oov_share",
)
DRIFT_TEXT: tuple[str, ...] = ("transcript",)
DERIVED_COLUMNS: tuple[str, ...] = ("oov_share",)  # computed by monitoring, not logged


class DriftSource(pa.DataFrameModel):
    """The logged columns drift is computed from; other columns of the log are ignored."""

    duration_s: Series[float] = pa.Field(nullable=True)
    rms_dbfs: Series[float] = pa.Field(nullable=True)
    snr_db_estimate: Series[float] = pa.Field(nullable=True)
    spectral_centroid_hz: Series[float] = pa.Field(nullable=True)
    spectral_bandwidth_hz: Series[float] = pa.Field(nullable=True)
    spectral_rolloff_hz: Series[float] = pa.Field(nullable=True)
    low_band_share: Series[float] = pa.Field(nullable=True)
    silence_share: Series[float] = pa.Field(nullable=True)
    confidence: Series[float] = pa.Field(nullable=True)
    n_words: Series[float] = pa.Field(nullable=True)
    transcript: Series[str] = pa.Field(nullable=True)

    class Config:
        strict = False  # a prediction log has more columns; only these are read
        coerce = True


class DriftFeatures(pa.DataFrameModel):
    """The drift table: DRIFT_NUMERIC (NaN where a value was not finite) and the transcript."""

    duration_s: Series[float] = pa.Field(nullable=True)
    rms_dbfs: Series[float] = pa.Field(nullable=True)
    snr_db_estimate: Series[float] = pa.Field(nullable=True)
    spectral_centroid_hz: Series[float] = pa.Field(nullable=True)
    spectral_bandwidth_hz: Series[float] = pa.Field(nullable=True)
    spectral_rolloff_hz: Series[float] = pa.Field(nullable=True)
    low_band_share: Series[float] = pa.Field(nullable=True)
    silence_share: Series[float] = pa.Field(nullable=True)
    confidence: Series[float] = pa.Field(nullable=True)
    n_words: Series[float] = pa.Field(nullable=True)
    oov_share: Series[float] = pa.Field(ge=0, le=1)
    transcript: Series[str]

    class Config:
        strict = True
        coerce = True
        ordered = True

    @pa.dataframe_check(error="expected at least one row, got an empty table")
    def has_rows(cls, frame: pd.DataFrame) -> bool:
        return len(frame) > 0

    @pa.dataframe_check(error="expected a finite value in every numeric drift column")
    def numeric_columns_have_values(cls, frame: pd.DataFrame) -> bool:
        values = frame[list(DRIFT_NUMERIC)].to_numpy(dtype=float)
        return bool(np.isfinite(values).any(axis=0).all())
