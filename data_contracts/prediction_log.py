"""The prediction-log contract: one row per request the service answered.

The service writes a row before it answers (data_contracts/prediction_store.py); monitoring reads a
window of rows and compares the audio features and confidences with the training reference.
It holds only what the service saw and said: no true transcript (labels come back through
the labelling loop, tasks/labelling.py), nothing a simulator knows.
"""

from __future__ import annotations

from typing import Annotated

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

# the audio features of models/audio.py (AudioFeatures), in the order the table stores them
AUDIO_FEATURE_COLUMNS: tuple[str, ...] = (
    "duration_s",
    "rms_dbfs",
    "peak_dbfs",
    "clipping_share",
    "silence_share",
    "snr_db_estimate",
    "spectral_centroid_hz",
    "spectral_bandwidth_hz",
    "spectral_rolloff_hz",
    "low_band_share",
)


class PredictionLog(pa.DataFrameModel):
    """A window of the prediction log, oldest row first."""

    request_id: Series[str] = pa.Field(unique=True, str_length={"min_value": 1})
    ts: Series[Annotated[pd.DatetimeTZDtype, "ns", "UTC"]]
    model_version: Series[str]
    model_tag: Series[str]
    transcript: Series[str]
    confidence: Series[float] = pa.Field(ge=0, le=1)
    latency_ms: Series[float] = pa.Field(ge=0)
    duration_s: Series[float] = pa.Field(ge=0)
    rms_dbfs: Series[float]
    peak_dbfs: Series[float]
    clipping_share: Series[float] = pa.Field(ge=0, le=1)
    silence_share: Series[float] = pa.Field(ge=0, le=1)
    snr_db_estimate: Series[float]
    spectral_centroid_hz: Series[float] = pa.Field(ge=0)
    spectral_bandwidth_hz: Series[float] = pa.Field(ge=0)
    spectral_rolloff_hz: Series[float] = pa.Field(ge=0)
    low_band_share: Series[float] = pa.Field(ge=0, le=1)
    n_words: Series[int] = pa.Field(ge=0)
    client: Series[str] = pa.Field(str_startswith="{")  # JSON object: app version, device
    consent: Series[bool]
    audio_path: Series[str] = pa.Field(nullable=True)

    class Config:
        strict = True
        coerce = True


PREDICTION_LOG_COLUMNS: tuple[str, ...] = tuple(PredictionLog.to_schema().columns)
