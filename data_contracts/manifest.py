"""Manifest contracts: the tables that carry audio and labels between stages.

RawManifest   what a reader (NeMo JSONL, Common Voice TSV, CSV, synthetic corpus) hands ingestion
Manifest      an ingested, normalised, split dataset version
AugmentedManifest(Manifest)  the same plus the noise that was mixed in (car-noise augmentation)
"""

from __future__ import annotations

import pandera.pandas as pa
from pandera.typing import Series

from models.audio import SAMPLE_RATE
from models.text import TRANSCRIPT_PATTERN

UTTERANCE_ID_PATTERN = r"^[A-Za-z0-9][\w.:-]*$"
# every split a dataset version may hold: the one list (evaluation diagnoses the first three)
SPLITS = ("train", "dev", "test", "cross_synth")
CONDITIONS = ("clean", "car", "telephone")
# a normalised transcript, or empty (an empty label is quarantined by ingestion, but a
# legitimately silent clip can exist in production data)
_TRANSCRIPT = TRANSCRIPT_PATTERN.rstrip("$").lstrip("^")
TRANSCRIPT_OR_EMPTY = rf"^(?:{_TRANSCRIPT})?$"


class RawManifest(pa.DataFrameModel):
    """One row per clip as a source describes it, before any rule is applied."""

    utterance_id: Series[str] = pa.Field(str_length={"min_value": 1})
    audio_path: Series[str] = pa.Field(str_length={"min_value": 1})
    transcript: Series[str] = pa.Field(nullable=True)
    voice: Series[str]
    synthesizer: Series[str]
    intent: Series[str]
    entities: Series[str]
    era: Series[str]
    source: Series[str]

    class Config:
        strict = True
        coerce = True


class Manifest(pa.DataFrameModel):
    """An ingested dataset version: clean labels, probed 16 kHz mono audio, a split per voice."""

    utterance_id: Series[str] = pa.Field(unique=True, str_matches=UTTERANCE_ID_PATTERN)
    audio_path: Series[str] = pa.Field(str_matches=r"^audio/[^/]+\.wav$")
    transcript: Series[str] = pa.Field(str_matches=TRANSCRIPT_OR_EMPTY)
    raw_transcript: Series[str]
    duration_s: Series[float] = pa.Field(gt=0)
    sample_rate: Series[int] = pa.Field(isin=[SAMPLE_RATE])
    rms_dbfs: Series[float] = pa.Field(le=0)
    snr_db_estimate: Series[float]
    voice: Series[str]
    synthesizer: Series[str]
    intent: Series[str]
    entities: Series[str]
    era: Series[str]
    source: Series[str]
    split: Series[str] = pa.Field(isin=list(SPLITS))
    audio_sha256: Series[str] = pa.Field(str_matches=r"^[0-9a-f]{64}$")

    class Config:
        strict = True
        coerce = True

    @pa.dataframe_check(error="a voice appears in more than one split (split must be by voice)")
    @classmethod
    def voices_in_one_split(cls, df):  # type: ignore[no-untyped-def]
        splits_per_voice = df.groupby("voice")["split"].transform("nunique")
        return splits_per_voice == 1


class AugmentedManifest(Manifest):
    """A dataset version after car-noise augmentation; clean rows keep noise_type 'none'."""

    utterance_id: Series[str] = pa.Field(unique=True, str_matches=r"^[A-Za-z0-9][\w.:+-]*$")
    audio_path: Series[str] = pa.Field(str_matches=r"^(audio|noisy)/[^/]+\.wav$")
    parent_id: Series[str]
    condition: Series[str] = pa.Field(isin=list(CONDITIONS))
    noise_type: Series[str]
    snr_db: Series[float] = pa.Field(nullable=True, ge=-30, le=60)
    # the copy's acoustic chain (tasks/acoustics.py), e.g. "speed=1.1 rt60=0.31 codec=gsm"
    acoustics: Series[str]

    class Config:
        strict = True
        coerce = True

    @pa.dataframe_check(error="car rows need a noise_type and snr_db; other rows have neither")
    @classmethod
    def condition_matches_noise(cls, df):  # type: ignore[no-untyped-def]
        car = df["condition"] == "car"
        return (car & (df["noise_type"] != "none") & df["snr_db"].notna()) | (
            ~car & (df["noise_type"] == "none") & df["snr_db"].isna()
        )
