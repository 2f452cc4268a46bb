"""Bias/variance diagnosis: avoidable bias, variance and train/test mismatch against a target."""

from __future__ import annotations

import math
from dataclasses import dataclass

VERDICTS: tuple[str, ...] = ("high bias", "high variance", "data mismatch", "on target")

_ACTIONS: dict[str, tuple[str, ...]] = {
    "high bias": (
        "train longer / bigger model (more epochs, larger encoder, less aggressive pruning)",
        "reduce regularisation and augmentation strength while the model underfits",
        "inspect train-set errors for label/transcript problems",
    ),
    "high variance": (
        "more data / more augmentation / regularisation (dropout, weight decay, SpecAugment)",
        "early-stop and select checkpoints on dev WER",
    ),
    "data mismatch": (
        "more voices like the test voices (new speakers/synthesizers in the training mix)",
        "synthesise training audio matching test conditions (noise types, SNR range)",
        "error-analyse dev vs test differences to find the mismatched factor",
    ),
    "on target": (
        "send the candidate to the promotion gate",
        "monitor production slices (era=new, car audio) for drift",
    ),
}


@dataclass(frozen=True)
class Diagnosis:
    """Bias/variance/mismatch verdict for one model, with next actions."""

    verdict: tuple[str, ...]
    explanation: str
    actions: list[str]
    avoidable_bias: float = math.nan
    variance: float = math.nan
    mismatch: float = math.nan


def _check_numbers(named: dict[str, float]) -> None:
    """Raise ValueError naming the first value that is not a finite non-negative number."""
    for name, value in named.items():
        try:
            ok = math.isfinite(float(value)) and float(value) >= 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"expected {name} to be a finite non-negative number, got {value!r}")


def diagnose(
    train_wer: float,
    dev_wer: float,
    test_wer: float,
    target_wer: float,
    peer_wer: float | None = None,
    *,
    tolerance: float = 0.02,
) -> Diagnosis:
    """Andrew-Ng-style verdict: avoidable bias, variance and train/test mismatch vs a target."""
    named = {"train_wer": train_wer, "dev_wer": dev_wer, "test_wer": test_wer}
    named |= {"target_wer": target_wer, "tolerance": tolerance}
    if peer_wer is not None:
        named["peer_wer"] = peer_wer
    _check_numbers(named)
    bias, variance, mismatch = train_wer - target_wer, dev_wer - train_wer, test_wer - dev_wer
    gaps = {"high bias": bias, "high variance": variance, "data mismatch": mismatch}
    problems = sorted((v for v, g in gaps.items() if g > tolerance), key=lambda v: -gaps[v])
    if not problems and test_wer > target_wer:
        problems = [max(gaps, key=lambda v: gaps[v])]  # small gaps adding up: name the largest
    verdict = (["on target"] if test_wer <= target_wer else []) + problems
    parts = [
        f"Test WER {test_wer:.3f} vs target {target_wer:.3f}"
        f" ({'met' if test_wer <= target_wer else 'missed'}).",
        f"Avoidable bias (train - target) {bias:+.3f}; variance (dev - train) {variance:+.3f}; "
        f"mismatch (test - dev, unseen test voices) {mismatch:+.3f}; "
        f"gaps above {tolerance:.3f} are flagged.",
    ]
    if peer_wer is not None:
        parts.append(
            f"Peer system WER {peer_wer:.3f}: we are {test_wer - peer_wer:+.3f} on test"
            + (" (the peer shows lower error is reachable)." if peer_wer < test_wer else ".")
        )
    if mismatch < -tolerance:
        parts.append("Test is easier than dev; dev may not represent the test conditions.")
    parts.append(f"Verdict: {', '.join(verdict)}.")
    actions = [a for v in (problems or verdict) for a in _ACTIONS[v]]
    return Diagnosis(
        verdict=tuple(verdict),
        explanation=" ".join(parts),
        actions=list(dict.fromkeys(actions)),
        avoidable_bias=bias,
        variance=variance,
        mismatch=mismatch,
    )
