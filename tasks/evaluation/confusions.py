"""Which words a model confuses and which clips it gets most wrong."""

from __future__ import annotations

from collections import Counter

import jiwer
import pandas as pd
import pandera.pandas as pa
from pandera.typing import DataFrame

from data_contracts.evaluation import Predictions
from tasks.evaluation.metrics import edit_counts, error_rate, pair_up

DEL, INS = "<del>", "<ins>"


@pa.check_types(lazy=True)
def top_confusions(predictions: DataFrame[Predictions], k: int = 20) -> pd.DataFrame:
    """Most frequent word substitutions, deletions ("w", "<del>") and insertions ("<ins>", "w")."""
    if k < 0:
        raise ValueError(f"expected k >= 0, got {k}")
    refs, hyps = pair_up(list(predictions["reference"]), list(predictions["hypothesis"]))
    counts: Counter[tuple[str, str]] = Counter()
    if refs:
        out = jiwer.process_words(refs, hyps)
        for ref, hyp, chunks in zip(out.references, out.hypotheses, out.alignments, strict=True):
            for c in chunks:
                if c.type == "substitute":
                    pairs = zip(
                        ref[c.ref_start_idx : c.ref_end_idx],
                        hyp[c.hyp_start_idx : c.hyp_end_idx],
                        strict=True,
                    )
                    counts.update(pairs)
                elif c.type == "delete":
                    counts.update((w, DEL) for w in ref[c.ref_start_idx : c.ref_end_idx])
                elif c.type == "insert":
                    counts.update((INS, w) for w in hyp[c.hyp_start_idx : c.hyp_end_idx])
    rows = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:k]
    return pd.DataFrame(
        [(r, h, n) for (r, h), n in rows], columns=["ref_word", "hyp_word", "count"]
    ).astype({"count": int})


@pa.check_types(lazy=True)
def worst_utterances(predictions: DataFrame[Predictions], k: int = 20) -> pd.DataFrame:
    """The k utterances with the highest WER (ties: longer first)."""
    if k < 0:
        raise ValueError(f"expected k >= 0, got {k}")
    per = predictions.copy()
    refs, hyps = pair_up(list(per["reference"]), list(per["hypothesis"]))
    per["word_errors"], per["ref_words"] = edit_counts(refs, hyps, unit="word")
    per["wer"] = [
        error_rate(e, n) for e, n in zip(per["word_errors"], per["ref_words"], strict=True)
    ]
    first = ["utterance_id", "split", "wer", "word_errors", "ref_words", "reference", "hypothesis"]
    context = ["duration_s", "condition", "snr_db", "noise_type", "voice", "intent", "era"]
    ordered = per.sort_values(
        ["wer", "duration_s", "utterance_id"], ascending=[False, False, True], kind="stable"
    )
    return ordered[[*first, *context, "confidence"]].head(k).reset_index(drop=True)
