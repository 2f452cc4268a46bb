"""The training loop on a tiny feature cache: checkpoints, resume and warm start."""

from __future__ import annotations

from pathlib import Path

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
