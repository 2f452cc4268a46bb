"""The training loop on a tiny feature cache: checkpoints, resume and warm start."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from data_contracts.scoping import TrainingBudget
from models.ctc import CTCAcousticModel
from models.recognizer import Recognizer
from tasks.feature_cache import FEATURE_FORMAT
from tasks.training import PROFILE_MODELS, train_acoustic_model


def _cache(tmp_path: Path, n: int = 12) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "features.pt"
    torch.save(
        {
            "format": FEATURE_FORMAT,
            "ids": [f"u{i}" for i in range(n)],
            "features": [torch.randn(60 + 5 * i, 80).half() for i in range(n)],
            "transcripts": ["play jazz", "call mom", "weather in paris"] * (n // 3),
        },
        path,
    )
    return path


def _budget(max_minutes: float = 0.01) -> TrainingBudget:
    return TrainingBudget(
        profile="smoke",
        max_minutes=max_minutes,
        eval_every_steps=2,
        batch_size=4,
        early_stop_patience=50,
    )


def test_checkpoints_and_resume(tmp_path: Path) -> None:
    cache, ids = _cache(tmp_path), [f"u{i}" for i in range(12)]
    first = train_acoustic_model.fn(
        cache, ids[:9], ids[9:], tmp_path / "run", _budget(), progress=False
    )
    assert (tmp_path / "run" / "best.pt").is_file() and (tmp_path / "run" / "last.pt").is_file()
    assert first.history and first.steps >= 2
    again = train_acoustic_model.fn(
        cache, ids[:9], ids[9:], tmp_path / "run", _budget(max_minutes=0.03), progress=False
    )
    assert again.history[: len(first.history)] == first.history  # continued, not restarted
    assert again.steps > first.steps


def test_warm_start_begins_from_the_given_weights(tmp_path: Path) -> None:
    cache, ids = _cache(tmp_path), [f"u{i}" for i in range(12)]
    torch.manual_seed(1)
    champion = CTCAcousticModel(PROFILE_MODELS["smoke"])
    Recognizer(champion.eval()).save(tmp_path / "champion")
    result = train_acoustic_model.fn(
        cache,
        ids[:9],
        ids[9:],
        tmp_path / "run",
        _budget(),
        progress=False,
        init_from=tmp_path / "champion",
    )
    assert result.history[0]["step"] == 0  # the starting point was evaluated first
    assert result.config == champion.config


def test_length_buckets_cover_every_row_once_within_the_caps() -> None:
    import numpy as np

    from models.training import length_buckets

    lengths = [50 + (37 * i) % 400 for i in range(40)]
    batches = length_buckets(lengths, 6, np.random.default_rng(0), max_frames=1200)
    assert sorted(i for b in batches for i in b) == list(range(40))
    assert all(len(b) <= 6 for b in batches)
    assert all(len(b) == 1 or max(lengths[i] for i in b) * len(b) <= 1200 for b in batches)


def test_cached_batches_are_collated_like_waveform_batches(tmp_path: Path) -> None:
    from models.features import ValTransform, collate, collate_features
    from tasks.feature_cache import load_feature_cache

    cache = load_feature_cache(_cache(tmp_path, n=6))
    batch = cache.batch([4, 1])
    assert batch.utterance_ids == ("u4", "u1")
    assert batch.features.shape == (2, 80, 80)  # padded to the longer clip, float
    assert batch.feature_lengths.tolist() == [80, 65]
    assert torch.equal(batch.features[1, 65:], torch.zeros(15, 80))
    waves = [torch.zeros(3200), torch.zeros(1600)]
    reference = collate(waves, ["call mom", "call mom"], ["a", "b"], ValTransform())
    assert torch.equal(batch.targets[:1], reference.targets[:1])  # same target encoding
    feats = [torch.randn(7, 80), torch.randn(3, 80)]
    with pytest.raises(ValueError, match="as many transcripts"):
        collate_features(feats, ["a"], ["x", "y"])
