"""The feature cache: log-mel features of every clip of an augmented version, computed once
and reused by every training run on that version.

Computing it fans out: the train flow maps `cache_feature_shard` over shards of whole
32-clip batches (features of a clip do not depend on its batch-mates, and the batches are
those of one pass anyway), then `merge_feature_shards` joins the parts in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from prefect import task

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
from tasks.inference import CHUNK, batch_aligned_shards, read_clip

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


def feature_cache_path(cache_dir: Path, key: str) -> Path:
    """Where the feature cache of an augmented version lives."""
    return cache_dir / f"{key}.pt"


@task(name="find-feature-cache")
def cached_features(cache_dir: Path, key: str) -> Path | None:
    """The feature cache of this version if it was computed before, else None."""
    path = feature_cache_path(cache_dir, key)
    return path if path.is_file() else None


@dataclass(frozen=True)
class FeaturePlan:
    shards: list[pd.DataFrame]  # manifest rows per shard, whole 32-clip batches
    parts: list[Path]  # one part file per shard
    path: Path  # the merged cache


@task(name="plan-feature-shards")
def plan_feature_shards(
    manifest: pd.DataFrame, cache_dir: Path, key: str, n_shards: int
) -> FeaturePlan:
    """Cut the manifest into at most n_shards shards of whole 32-clip batches, a part each."""
    shards = batch_aligned_shards(manifest, n_shards)
    parts = [cache_dir / f"{key}.part-{i}.pt" for i in range(len(shards))]
    return FeaturePlan(shards, parts, feature_cache_path(cache_dir, key))


@task(name="cache-features-shard")
def cache_feature_shard(
    rows: pd.DataFrame, data_dir: Path, part: Path, torch_threads: int | None = None
) -> Path:
    """Log-mel features of one shard of clips, in 32-clip batches, saved as a part file."""
    if torch_threads is not None:
        torch.set_num_threads(torch_threads)
    transform = ValTransform().eval()
    paths = [data_dir / p for p in rows["audio_path"]]
    feats: list[torch.Tensor] = []
    with torch.inference_mode():
        for start in range(0, len(paths), CHUNK):
            waves = [torch.from_numpy(read_clip(p)) for p in paths[start : start + CHUNK]]
            audio, lengths = pad_waveforms(waves)  # (B, S), (B,)
            features, frame_lengths = transform(audio, lengths)  # (B, T, F), (B,)
            feats += [
                f[:n].to(torch.float16).clone()
                for f, n in zip(features, frame_lengths, strict=True)
            ]
    part.parent.mkdir(parents=True, exist_ok=True)
    _save_atomically(
        {
            "format": FEATURE_FORMAT,
            "ids": list(rows["utterance_id"]),
            "features": feats,
            "transcripts": list(rows["transcript"]),
        },
        part,
    )
    return part


@task(name="merge-feature-shards")
def merge_feature_shards(parts: list[Path], path: Path) -> Path:
    """Join the shards' part files, in order, into the version's feature cache."""
    caches = [load_feature_cache(part) for part in parts]
    _save_atomically(
        {
            "format": FEATURE_FORMAT,
            "ids": [u for c in caches for u in c.ids],
            "features": [f for c in caches for f in c.features],
            "transcripts": [t for c in caches for t in c.transcripts],
        },
        path,
    )
    for part in parts:
        part.unlink(missing_ok=True)
    return path


def _save_atomically(data: dict[str, object], path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(data, tmp)
    tmp.rename(path)


def load_feature_cache(path: Path) -> FeatureCache:
    """Read a feature cache (tensors and strings only: weights_only loading)."""
    data = torch.load(path, weights_only=True)
    if data.get("format") != FEATURE_FORMAT:
        raise ValueError(
            f"{path}: expected features {FEATURE_FORMAT!r}, got {data.get('format')!r}"
        )
    return FeatureCache(list(data["ids"]), list(data["features"]), list(data["transcripts"]))
