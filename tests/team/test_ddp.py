"""Distributed training: the flow's training step as a torch DDP job of 2 processes under
torchrun (gloo on this CPU), a few steps on a tiny feature cache; both ranks end with the
same weights, rank 0 holds the checkpoints and the history."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from data_contracts.scoping import TrainingBudget
from models.ctc import CTCAcousticModel
from models.distributed import Ranks, my_batches, weights_digest
from tasks.feature_cache import FEATURE_FORMAT

pytestmark = [pytest.mark.slow]  # two torch processes start


def _cache(tmp_path: Path, n: int) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "features.pt"
    texts = ["play jazz", "call mom", "weather in paris", "navigate home"]
    torch.save(
        {
            "format": FEATURE_FORMAT,
            "ids": [f"u{i}" for i in range(n)],
            "features": [torch.randn(60 + 5 * i, 80).half() for i in range(n)],
            "transcripts": [texts[i % len(texts)] for i in range(n)],
        },
        path,
    )
    return path


def test_two_ranks_train_to_identical_weights(tmp_path: Path) -> None:
    from tasks.distributed import rank_digests, train_with_torchrun

    ids = [f"u{i}" for i in range(20)]
    budget = TrainingBudget(
        profile="smoke", processes=2, device="cpu", max_minutes=2, max_epochs=2,
        batch_size=4, eval_every_steps=2, early_stop_patience=50,
    )  # fmt: skip
    run_dir = tmp_path / "run"
    result = train_with_torchrun.fn(
        _cache(tmp_path, 20), ids[:16], ids[16:], run_dir, budget, progress=False
    )
    # 16 clips in batches of 4: 4 batches an epoch, 2 per rank, 2 epochs -> 4 steps each
    assert result.steps == 4
    assert result.stopped_because == "reached max_epochs=2"
    assert [h["step"] for h in result.history] == [2, 4]
    assert result.utterances_per_second > 0
    digests = rank_digests(run_dir)
    assert set(digests) == {0, 1}
    assert digests[0] == digests[1] == result.weights_sha256
    # the digests are of real weights: rank 0's last checkpoint (step 4) holds them
    model = CTCAcousticModel(result.config)
    model.load_state_dict(torch.load(run_dir / "last.pt", weights_only=True)["model"])
    assert weights_digest(model) == digests[0]
    assert result.checkpoint == run_dir / "best.pt" and result.checkpoint.is_file()
    assert json.loads((run_dir / "ddp-job.json").read_text())["budget"]["processes"] == 2


def test_every_rank_gets_as_many_batches() -> None:
    batches = list(range(7))
    cpu = torch.device("cpu")
    shares = [my_batches(batches, Ranks(r, 3, cpu)) for r in range(3)]
    assert shares == [[0, 3], [1, 4], [2, 5]]  # the 7th would leave one rank waiting
    assert my_batches(batches, Ranks.single("cpu")) == batches


def test_a_failed_job_names_its_log(tmp_path: Path) -> None:
    from tasks.distributed import train_with_torchrun

    budget = TrainingBudget(profile="smoke", processes=2, device="cpu")
    with pytest.raises(RuntimeError, match=r"torchrun with 2 processes failed .*ddp\.log"):
        train_with_torchrun.fn(tmp_path / "missing.pt", ["a"], ["b"], tmp_path / "run", budget)
