"""The feature cache: log-mel features of every clip of an augmented version, computed once
and reused by every training run on that version.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from prefect import task
from tqdm import tqdm

from models.audio import SAMPLE_RATE
from models.features import (
    HOP_LENGTH,
    N_MELS,
    Batch,
    SpecAugment,
    ValTransform,
    collate_features,
    pad_waveforms,
)
from tasks.inference import read_clip

FEATURE_FORMAT = f"logmel{N_MELS}-hop{HOP_LENGTH}-sr{SAMPLE_RATE}/1"


@dataclass
class FeatureCache:
    ids: list[str]
    features: list[torch.Tensor]  # each (T, F) float16
    transcripts: list[str]

    def index(self) -> dict[str, int]:
        return {u: i for i, u in enumerate(self.ids)}

    def batch(self, rows: Sequence[int], augment: SpecAugment | None = None) -> Batch:
        """Some cached rows as a padded Batch (SpecAugment on the train path only)."""
        return collate_features(
            [self.features[i] for i in rows],
            [self.transcripts[i] for i in rows],
            [self.ids[i] for i in rows],
            augment,
        )


@task(name="cache-features")
def cache_features(
    manifest: pd.DataFrame, data_dir: Path, cache_dir: Path, key: str, progress: bool = True
) -> Path:
    """Log-mel features of every clip, computed once per augmented version and reused."""
    path = cache_dir / f"{key}.pt"
    if path.is_file():
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    transform = ValTransform().eval()
    ids = list(manifest["utterance_id"])
    paths = [data_dir / p for p in manifest["audio_path"]]
    feats: list[torch.Tensor] = []
    with torch.inference_mode():
        for start in tqdm(
            range(0, len(ids), 32),
            desc="train: caching features",
            unit="batch",
            disable=not progress,
        ):
            waves = [torch.from_numpy(read_clip(p)) for p in paths[start : start + 32]]
            audio, lengths = pad_waveforms(waves)  # (B, S), (B,)
            features, frame_lengths = transform(audio, lengths)  # (B, T, F), (B,)
            feats += [
                f[:n].to(torch.float16).clone()
                for f, n in zip(features, frame_lengths, strict=True)
            ]
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "format": FEATURE_FORMAT,
            "ids": ids,
            "features": feats,
            "transcripts": list(manifest["transcript"]),
        },
        tmp,
    )
    tmp.rename(path)
    return path


def load_feature_cache(path: Path) -> FeatureCache:
    """Read a feature cache (tensors and strings only: weights_only loading)."""
    data = torch.load(path, weights_only=True)
    if data.get("format") != FEATURE_FORMAT:
        raise ValueError(
            f"{path}: expected features {FEATURE_FORMAT!r}, got {data.get('format')!r}"
        )
    return FeatureCache(list(data["ids"]), list(data["features"]), list(data["transcripts"]))
