"""Plain-torch helpers of the training loop, in nanoGPT's spirit: the LR schedule, length
bucketing, checkpoints. No orchestration: tasks.training wires them into the loop.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

WARMUP_STEPS = 150
WARM_START_WARMUP_STEPS = 30  # a warm start refines working weights: shorter warmup, half LR
MIN_LR_FRACTION = 0.05  # the cosine ends at 5% of the peak, not at zero


def get_lr(step: int, progress: float, peak_lr: float, warmup_steps: int = WARMUP_STEPS) -> float:
    """Linear warmup over ``warmup_steps``, then a cosine over the time budget.

    ``progress`` is the fraction of the time budget spent (0..1): training is budgeted in
    minutes, not steps, so the cosine follows the clock.
    """
    frac = min(1.0, max(0.0, progress))
    return (
        peak_lr
        * min(1.0, (step + 1) / warmup_steps)
        * (MIN_LR_FRACTION + (1 - MIN_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * frac)))
    )


def length_buckets(
    lengths: Sequence[int], batch_size: int, rng: np.random.Generator, max_frames: int = 6000
) -> list[list[int]]:
    """Batches of similar length (less padding), capped in total frames, in random order."""
    order = np.argsort(np.asarray(lengths) + rng.uniform(0, 30, len(lengths)))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        longest = max(longest, lengths[i])
        if current and (len(current) >= batch_size or longest * (len(current) + 1) > max_frames):
            batches.append(current)
            current, longest = [], lengths[i]
        current.append(int(i))
    if current:
        batches.append(current)
    return [batches[k] for k in rng.permutation(len(batches))]


@dataclass
class LoopState:
    """Where the loop stands: what a checkpoint stores besides the weights."""

    step: int = 0
    epoch: int = 0
    bad_evals: int = 0  # evaluations in a row without a better dev WER
    spent_s: float = 0.0  # training seconds spent before this process (resume)
    best_dev_wer: float = math.inf
    history: list[dict[str, float]] = field(default_factory=list)


def save_checkpoint(
    path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: LoopState
) -> None:
    """Weights, optimizer and loop state, loadable with ``weights_only=True``."""
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": state.step,
            "epoch": state.epoch,
            "bad_evals": state.bad_evals,
            "spent": state.spent_s,
            "best_dev_wer": state.best_dev_wer,
            "history": json.dumps(state.history),
        },
        partial := path.with_name(path.name + ".partial"),
    )
    partial.replace(path)  # a process killed mid-save leaves the previous checkpoint whole


def load_checkpoint(
    path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> LoopState:
    """Restore weights and optimizer from ``save_checkpoint``'s file; return the loop state."""
    saved = torch.load(path, weights_only=True, map_location="cpu")  # made on a GPU or not
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    return LoopState(
        step=int(saved["step"]),
        epoch=int(saved["epoch"]),
        bad_evals=int(saved["bad_evals"]),
        spent_s=float(saved["spent"]),
        best_dev_wer=float(saved["best_dev_wer"]),
        history=json.loads(str(saved["history"])),
    )
