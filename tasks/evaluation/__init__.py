"""Evaluation of the speech recogniser, one module per concern.

metrics          WER/CER from jiwer alignments
slices           SNR/duration buckets and WER/CER per slice value (`slice_metrics`)
confusions       word confusions and the worst clips
diagnosis        bias/variance/mismatch verdict against a target
recommendations  next round's augmentation policy from the slices
analysis         all of the above for one model (`analyse` -> `ErrorAnalysis`)
report           markdown summary, PNG plots and the HTML report (matplotlib loaded lazily)

All but `report` are pure functions of a `data_contracts.evaluation.Predictions` table (one
row per clip) or of the `SliceMetrics` table made from it; Prefect and MLflow wrap them in
tasks.error_analysis and tasks.registry.
"""

from __future__ import annotations

from tasks.evaluation.analysis import DIAGNOSED_SPLITS, ErrorAnalysis, analyse
from tasks.evaluation.confusions import DEL, INS, top_confusions, worst_utterances
from tasks.evaluation.diagnosis import VERDICTS, Diagnosis, diagnose
from tasks.evaluation.metrics import cer, wer
from tasks.evaluation.recommendations import recommendations
from tasks.evaluation.report import summary_markdown, write_html_report
from tasks.evaluation.slices import (
    DURATION_BUCKETS,
    SLICE_KINDS,
    SNR_BUCKETS,
    UNKNOWN,
    duration_bucket,
    slice_metrics,
    snr_bucket,
)

__all__ = [
    "DEL",
    "DIAGNOSED_SPLITS",
    "DURATION_BUCKETS",
    "INS",
    "SLICE_KINDS",
    "SNR_BUCKETS",
    "UNKNOWN",
    "VERDICTS",
    "Diagnosis",
    "ErrorAnalysis",
    "analyse",
    "cer",
    "diagnose",
    "duration_bucket",
    "recommendations",
    "slice_metrics",
    "snr_bucket",
    "summary_markdown",
    "top_confusions",
    "wer",
    "worst_utterances",
    "write_html_report",
]
