"""Word and character error rates, counted from jiwer's alignments."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import jiwer
import numpy as np
import pandas as pd


def clean_text(text: object) -> str:
    """Collapse whitespace in a transcript; None/NaN become the empty string."""
    if not isinstance(text, str):
        if text is None or (pd.api.types.is_scalar(text) and pd.isna(text)):
            return ""
        text = str(text)
    return " ".join(text.split())


def pair_up(refs: Sequence[str] | str, hyps: Sequence[str] | str) -> tuple[list[str], list[str]]:
    """Normalise reference/hypothesis sequences and check they pair up."""
    refs_l = [clean_text(r) for r in ([refs] if isinstance(refs, str) else refs)]
    hyps_l = [clean_text(h) for h in ([hyps] if isinstance(hyps, str) else hyps)]
    if len(refs_l) != len(hyps_l):
        raise ValueError(
            f"expected one hypothesis per reference, got {len(refs_l)} references "
            f"and {len(hyps_l)} hypotheses"
        )
    return refs_l, hyps_l


def edit_counts(
    refs: list[str], hyps: list[str], unit: Literal["word", "char"]
) -> tuple[np.ndarray, np.ndarray]:
    """Per-pair edit count and reference length (words or characters) from jiwer alignments."""
    if not refs:
        return np.zeros(0, dtype=int), np.zeros(0, dtype=int)
    out = (
        jiwer.process_words(refs, hyps) if unit == "word" else jiwer.process_characters(refs, hyps)
    )
    errors = np.zeros(len(refs), dtype=int)
    for i, chunks in enumerate(out.alignments):
        for chunk in chunks:
            if chunk.type in ("substitute", "delete"):
                errors[i] += chunk.ref_end_idx - chunk.ref_start_idx
            elif chunk.type == "insert":
                errors[i] += chunk.hyp_end_idx - chunk.hyp_start_idx
    lengths = np.array([len(r) for r in out.references], dtype=int)
    return errors, lengths


def error_rate(errors: float, total: float) -> float:
    """Errors per reference unit; with no reference units the raw insertion count (0 if none)."""
    return float(errors) / float(total) if total > 0 else float(errors)


def wer(refs: Sequence[str] | str, hyps: Sequence[str] | str) -> float:
    """Corpus word error rate: total word edits / total reference words."""
    errors, lengths = edit_counts(*pair_up(refs, hyps), unit="word")
    return error_rate(errors.sum(), lengths.sum())


def cer(refs: Sequence[str] | str, hyps: Sequence[str] | str) -> float:
    """Corpus character error rate: total character edits / total reference characters."""
    errors, lengths = edit_counts(*pair_up(refs, hyps), unit="char")
    return error_rate(errors.sum(), lengths.sum())
