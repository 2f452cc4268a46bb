"""One request's way through a service process: decode, batch, audio features, log row."""

from __future__ import annotations

import concurrent.futures
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from data_contracts.prediction_store import PredictionStore
from deployments.batcher import Batcher, Gauge, Recognition
from models.audio import (
    SAMPLE_RATE,
    AudioFeatures,
    DecodedAudio,
    compute_audio_features,
    decode_audio,
)

Prepared = tuple[DecodedAudio, concurrent.futures.Future[Recognition], AudioFeatures]


def prepare(audio: Path, max_duration_s: float, batcher: Batcher, preparing: Gauge) -> Prepared:
    """Decode, hand the samples to the batcher, then compute the log's audio features while
    the model runs (one worker-thread hop for all three). The caller entered `preparing`
    (the batcher may wait for this clip); it is left here, whatever happens."""
    try:
        decoded = decode_audio(audio.read_bytes(), max_duration_s)
    except BaseException:
        preparing.leave()
        batcher.poke()  # not coming after all
        raise
    preparing.leave()
    pending = batcher.submit(decoded.samples)
    try:
        return decoded, pending, compute_audio_features(decoded.samples, SAMPLE_RATE)
    except BaseException:
        pending.cancel()
        raise


def prediction_record(
    request_id: str,
    result: Recognition,
    latency_ms: float,
    features: AudioFeatures,
    client: dict[str, Any],
    consent: bool,
    audio_path: Path | None,
) -> dict[str, Any]:
    """The prediction-log row of one answered request (data_contracts/prediction_log.py)."""
    return {
        "request_id": request_id,
        "ts": datetime.now(UTC),
        "model_version": result.model_version,
        "model_tag": result.model_tag,
        "transcript": result.text,
        "confidence": min(max(float(result.confidence), 0.0), 1.0),
        "latency_ms": latency_ms,
        **features.as_dict(),
        "n_words": len(result.text.split()),
        "client": json.dumps(client, sort_keys=True),
        "consent": consent,
        "audio_path": str(audio_path) if audio_path else None,
    }


def persist(
    store: PredictionStore, record: dict[str, Any], samples: np.ndarray, audio_path: Path | None
) -> None:
    """Keep the consented audio (16 kHz WAV), then commit the row."""
    if audio_path is not None:  # the file first: a row never points at audio that is not there
        audio_path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(audio_path, samples, SAMPLE_RATE, subtype="PCM_16")
    store.append(record)
