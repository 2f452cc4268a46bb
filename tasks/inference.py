"""Inference over stored datasets: read clips, transcribe a manifest, and the sharded
transcription the evaluation maps over a Prefect task runner (one task run per shard).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import torch
from prefect import task
from tqdm import tqdm

from data_contracts.scoping import Scope
from models.audio import SAMPLE_RATE
from models.cores import available_cores
from models.recognizer import Recognizer
from tasks.fanout import shards

# Clips handed to Recognizer.transcribe at once. Shards are cut on these boundaries, so a
# sharded evaluation batches clips exactly as one pass does (int8 scales per batch).
CHUNK = 32


def read_clip(path: Path) -> np.ndarray:
    """A 16 kHz mono clip as float32 (stored datasets are always 16 kHz mono)."""
    audio, sr = sf.read(path, dtype="float32")
    if sr != SAMPLE_RATE or audio.ndim != 1:
        raise ValueError(
            f"{path}: expected {SAMPLE_RATE} Hz mono, got {sr} Hz and shape {audio.shape}"
        )
    return audio


def transcribe_manifest(
    recognizer: Recognizer,
    manifest: pd.DataFrame,
    data_dir: Path,
    progress: bool = True,
    desc: str = "evaluate",
) -> pd.DataFrame:
    """Transcribe every clip of a manifest; returns the manifest with hypothesis + confidence."""
    hyps: list[str] = []
    confs: list[float] = []
    paths = [data_dir / p for p in manifest["audio_path"]]
    for start in tqdm(range(0, len(paths), CHUNK), desc=desc, unit="batch", disable=not progress):
        out = recognizer.transcribe([read_clip(p) for p in paths[start : start + CHUNK]])
        hyps += [t.text for t in out]
        confs += [t.confidence for t in out]
    return manifest.assign(hypothesis=hyps, confidence=confs)


def prediction_frame(transcribed: pd.DataFrame) -> pd.DataFrame:
    """The columns tasks.evaluation expects, from a transcribed augmented manifest."""
    df = transcribed
    return pd.DataFrame(
        {
            "utterance_id": df["utterance_id"],
            "split": df["split"],
            "reference": df["transcript"],
            "hypothesis": df["hypothesis"],
            "confidence": df["confidence"].astype(float),
            "condition": df["condition"],
            "snr_db": pd.to_numeric(df["snr_db"], errors="coerce"),
            "noise_type": df["noise_type"],
            "voice": df["voice"],
            "synthesizer": df["synthesizer"],
            "duration_s": df["duration_s"].astype(float),
            "intent": df["intent"],
            "era": df["era"],
            "has_entity": df["entities"].astype(str).str.len() > 0,
        }
    )


def shard_threads(scope: Scope, n_shards: int) -> int | None:
    """Torch threads per shard: the cores split between worker processes; None for threads
    (a thread pool shares one process, whose torch threads are left alone)."""
    if scope.runtime.task_runner != "processes":
        return None
    return max(1, available_cores() // max(1, n_shards))


def batch_aligned_shards(rows: pd.DataFrame, n_shards: int) -> list[pd.DataFrame]:
    """At most n_shards contiguous shards of whole CHUNK-clip batches (order kept), so work
    done per shard batches clips exactly as one pass over all rows does."""
    groups = shards(range(0, len(rows), CHUNK), n_shards)  # chunk starts, per shard
    return [rows.iloc[g[0] : g[-1] + CHUNK] for g in groups] or [rows]


@task(name="cut-evaluation-shards")
def transcription_shards(rows: pd.DataFrame, n_shards: int) -> list[pd.DataFrame]:
    """Cut the evaluation rows into at most n_shards shards of whole CHUNK-clip batches."""
    return batch_aligned_shards(rows, n_shards)


@task(name="transcribe-shard")
def transcribe_shard(
    recognizer_dir: Path,
    rows: pd.DataFrame,
    data_dir: Path,
    torch_threads: int | None = None,
    label: str = "challenger",
) -> pd.DataFrame:
    """Transcribe one shard of manifest rows with the saved recogniser; its prediction rows."""
    if torch_threads is not None:
        torch.set_num_threads(torch_threads)
    recognizer = Recognizer.load(recognizer_dir)
    transcribed = transcribe_manifest(recognizer, rows, data_dir, desc=f"evaluate {label}")
    return prediction_frame(transcribed)


@task(name="merge-predictions")
def merge_predictions(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """The shards' prediction rows in shard order, as one table."""
    return pd.concat(parts, ignore_index=True)
