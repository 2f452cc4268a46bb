"""Evaluation of the speech recogniser: WER/CER, slice metrics, bias/variance diagnosis, reports.

Everything here is a pure function of a ``predictions`` DataFrame (one row per utterance);
orchestration (Prefect) and tracking (MLflow) wrap these functions elsewhere.
"""

from __future__ import annotations

import copy
import html
import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import jiwer
import numpy as np
import pandas as pd

REQUIRED_COLUMNS: tuple[str, ...] = (
    "utterance_id",
    "split",
    "reference",
    "hypothesis",
    "confidence",
    "condition",
    "snr_db",
    "noise_type",
    "voice",
    "synthesizer",
    "duration_s",
    "intent",
    "era",
    "has_entity",
)
SPLITS: tuple[str, ...] = ("train", "dev", "test")
SLICE_KINDS: tuple[str, ...] = (
    "condition",
    "snr_bucket",
    "noise_type",
    "voice",
    "synthesizer",
    "duration_bucket",
    "intent",
    "era",
    "has_entity",
)
SNR_BUCKETS: tuple[str, ...] = ("<0 dB", "0-5 dB", "5-10 dB", "10-20 dB", ">=20 dB", "clean")
DURATION_BUCKETS: tuple[str, ...] = ("<1.5 s", "1.5-3 s", "3-5 s", ">=5 s")
UNKNOWN = "unknown"
VERDICTS: tuple[str, ...] = ("high bias", "high variance", "data mismatch", "on target")
POLICY_KEYS: tuple[str, ...] = ("augmented_share", "snr_db_min", "snr_db_max", "noise_weights")
SLICE_COLUMNS: tuple[str, ...] = ("slice", "value", "n", "wer", "cer")
DEL, INS = "<del>", "<ins>"

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


# --------------------------------------------------------------------------- validation


def validate_predictions(
    predictions: pd.DataFrame,
    required: Iterable[str] = REQUIRED_COLUMNS,
    what: str = "predictions",
) -> None:
    """Raise ValueError naming any required column the frame lacks."""
    if not isinstance(predictions, pd.DataFrame):
        raise TypeError(f"expected {what} as a pandas DataFrame, got {type(predictions).__name__}")
    missing = [c for c in required if c not in predictions.columns]
    if missing:
        raise ValueError(
            f"{what} is missing required columns {missing}; got columns {list(predictions.columns)}"
        )


def _validate_policy(policy: Mapping[str, Any]) -> None:
    """Raise ValueError unless policy has the augmentation keys with sane values."""
    missing = [k for k in POLICY_KEYS if k not in policy]
    if missing:
        raise ValueError(f"current_policy is missing keys {missing}; got keys {sorted(policy)}")
    share = float(policy["augmented_share"])
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"expected augmented_share in [0, 1], got {share}")
    if float(policy["snr_db_min"]) > float(policy["snr_db_max"]):
        raise ValueError(
            "expected snr_db_min <= snr_db_max, "
            f"got {policy['snr_db_min']} > {policy['snr_db_max']}"
        )
    weights = policy["noise_weights"]
    if not isinstance(weights, Mapping) or any(float(w) < 0 for w in weights.values()):
        raise ValueError(
            f"expected noise_weights as a dict of non-negative weights, got {weights!r}"
        )


# --------------------------------------------------------------------------- WER / CER


def _clean_text(text: object) -> str:
    """Collapse whitespace in a transcript; None/NaN become the empty string."""
    if not isinstance(text, str):
        if text is None or (pd.api.types.is_scalar(text) and pd.isna(text)):
            return ""
        text = str(text)
    return " ".join(text.split())


def _pairs(refs: Sequence[str] | str, hyps: Sequence[str] | str) -> tuple[list[str], list[str]]:
    """Normalise reference/hypothesis sequences and check they pair up."""
    refs_l = [_clean_text(r) for r in ([refs] if isinstance(refs, str) else refs)]
    hyps_l = [_clean_text(h) for h in ([hyps] if isinstance(hyps, str) else hyps)]
    if len(refs_l) != len(hyps_l):
        raise ValueError(
            f"expected one hypothesis per reference, got {len(refs_l)} references "
            f"and {len(hyps_l)} hypotheses"
        )
    return refs_l, hyps_l


def _edit_counts(
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


def _ratio(errors: float, total: float) -> float:
    """Errors per reference unit; with no reference units the raw insertion count (0 if none)."""
    return float(errors) / float(total) if total > 0 else float(errors)


def wer(refs: Sequence[str] | str, hyps: Sequence[str] | str) -> float:
    """Corpus word error rate: total word edits / total reference words."""
    errors, lengths = _edit_counts(*_pairs(refs, hyps), unit="word")
    return _ratio(errors.sum(), lengths.sum())


def cer(refs: Sequence[str] | str, hyps: Sequence[str] | str) -> float:
    """Corpus character error rate: total character edits / total reference characters."""
    errors, lengths = _edit_counts(*_pairs(refs, hyps), unit="char")
    return _ratio(errors.sum(), lengths.sum())


# --------------------------------------------------------------------------- buckets & slices


def snr_bucket(condition: str, snr_db: float) -> str:
    """Bucket label for one utterance's SNR; clean audio gets "clean"."""
    if condition == "clean":
        return "clean"
    if snr_db is None or pd.isna(snr_db):
        return UNKNOWN
    if snr_db < 0:
        return "<0 dB"
    if snr_db < 5:
        return "0-5 dB"
    if snr_db < 10:
        return "5-10 dB"
    if snr_db < 20:
        return "10-20 dB"
    return ">=20 dB"


def duration_bucket(duration_s: float) -> str:
    """Bucket label for an utterance duration in seconds."""
    if duration_s is None or pd.isna(duration_s):
        return UNKNOWN
    if duration_s < 1.5:
        return "<1.5 s"
    if duration_s < 3:
        return "1.5-3 s"
    if duration_s < 5:
        return "3-5 s"
    return ">=5 s"


def _per_utterance(predictions: pd.DataFrame) -> pd.DataFrame:
    """Copy of predictions with per-utterance edit counts, WER and bucket columns."""
    refs, hyps = _pairs(list(predictions["reference"]), list(predictions["hypothesis"]))
    per = predictions.copy()
    per["word_errors"], per["ref_words"] = _edit_counts(refs, hyps, unit="word")
    per["char_errors"], per["ref_chars"] = _edit_counts(refs, hyps, unit="char")
    per["utt_wer"] = [
        _ratio(e, n) for e, n in zip(per["word_errors"], per["ref_words"], strict=True)
    ]
    per["snr_bucket"] = [
        snr_bucket(c, s) for c, s in zip(per["condition"], per["snr_db"], strict=True)
    ]
    per["duration_bucket"] = [duration_bucket(d) for d in per["duration_s"]]
    return per


def _value_order(kind: str, values: Iterable[str]) -> list[str]:
    """Display order for one slice kind: bucket order for buckets, alphabetical otherwise."""
    values = set(values)
    canonical = {"snr_bucket": SNR_BUCKETS, "duration_bucket": DURATION_BUCKETS}.get(kind)
    if canonical is None:
        return sorted(values)
    return [v for v in canonical if v in values] + sorted(values - set(canonical))


def _slice_table(per: pd.DataFrame) -> pd.DataFrame:
    """Slice metrics table (overall first) from a per-utterance frame."""
    sums = ["word_errors", "ref_words", "char_errors", "ref_chars"]
    records: list[dict[str, Any]] = [
        {
            "slice": "overall",
            "value": "all",
            "n": len(per),
            "wer": _ratio(per["word_errors"].sum(), per["ref_words"].sum()),
            "cer": _ratio(per["char_errors"].sum(), per["ref_chars"].sum()),
        }
    ]
    for kind in SLICE_KINDS:
        keys = per[kind].astype(str)
        grouped = per[sums].groupby(keys).sum()
        counts = keys.value_counts()
        for value in _value_order(kind, grouped.index):
            row = grouped.loc[value]
            records.append(
                {
                    "slice": kind,
                    "value": value,
                    "n": int(counts[value]),
                    "wer": _ratio(row["word_errors"], row["ref_words"]),
                    "cer": _ratio(row["char_errors"], row["ref_chars"]),
                }
            )
    return pd.DataFrame.from_records(records, columns=list(SLICE_COLUMNS))


def _split_rows(predictions: pd.DataFrame, split: str) -> pd.DataFrame:
    """Rows of one split, or ValueError naming the splits that exist."""
    rows = predictions[predictions["split"] == split]
    if rows.empty:
        present = sorted(map(str, predictions["split"].unique()))
        raise ValueError(f"expected rows with split == {split!r}; splits present: {present}")
    return rows


def slice_metrics(predictions: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """WER/CER per slice value (plus an overall row) on one split."""
    validate_predictions(predictions)
    return _slice_table(_per_utterance(_split_rows(predictions, split)))


# --------------------------------------------------------------------------- diagnosis


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
    for name, value in named.items():
        try:
            ok = math.isfinite(float(value)) and float(value) >= 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"expected {name} to be a finite non-negative number, got {value!r}")
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


# --------------------------------------------------------------------------- error analysis


def top_confusions(predictions: pd.DataFrame, k: int = 20) -> pd.DataFrame:
    """Most frequent word substitutions, deletions ("w", "<del>") and insertions ("<ins>", "w")."""
    validate_predictions(predictions, ("reference", "hypothesis"))
    if k < 0:
        raise ValueError(f"expected k >= 0, got {k}")
    refs, hyps = _pairs(list(predictions["reference"]), list(predictions["hypothesis"]))
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


def worst_utterances(predictions: pd.DataFrame, k: int = 20) -> pd.DataFrame:
    """The k utterances with the highest WER (ties: longer first)."""
    validate_predictions(predictions, ("utterance_id", "reference", "hypothesis", "duration_s"))
    if k < 0:
        raise ValueError(f"expected k >= 0, got {k}")
    per = predictions.copy()
    refs, hyps = _pairs(list(per["reference"]), list(per["hypothesis"]))
    per["word_errors"], per["ref_words"] = _edit_counts(refs, hyps, unit="word")
    per["wer"] = [_ratio(e, n) for e, n in zip(per["word_errors"], per["ref_words"], strict=True)]
    first = ["utterance_id", "split", "wer", "word_errors", "ref_words", "reference", "hypothesis"]
    context = ["duration_s", "condition", "snr_db", "noise_type", "voice", "intent", "era"]
    columns = [c for c in first + context + ["confidence"] if c in per.columns]
    ordered = per.sort_values(
        ["wer", "duration_s", "utterance_id"], ascending=[False, False, True], kind="stable"
    )
    return ordered[columns].head(k).reset_index(drop=True)


def _slice_values(slices: pd.DataFrame, kind: str, min_n: int) -> pd.Series:
    """WER per value of one slice kind, keeping values with at least min_n utterances."""
    rows = slices[(slices["slice"] == kind) & (slices["n"] >= min_n)]
    return pd.Series(rows["wer"].to_numpy(dtype=float), index=rows["value"].astype(str))


def _much_worse(bad: float, good: float, ratio: float, min_gap: float) -> bool:
    """Whether `bad` exceeds `good` by the ratio and by an absolute margin."""
    return bad > ratio * good and bad - good > min_gap


def recommendations(
    slices: pd.DataFrame,
    diagnosis: Diagnosis,
    current_policy: Mapping[str, Any],
    *,
    ratio: float = 1.25,
    min_gap: float = 0.01,
    share_step: float = 0.1,
    share_cap: float = 0.8,
    snr_step_db: float = 5.0,
    min_snr_span_db: float = 5.0,
    noise_boost: float = 1.5,
    min_n: int = 5,
) -> dict[str, Any]:
    """Next round's augmentation policy plus human actions and the reason for each change."""
    validate_predictions(slices, SLICE_COLUMNS, "slices")
    _validate_policy(current_policy)
    policy: dict[str, Any] = copy.deepcopy(dict(current_policy))
    policy["noise_weights"] = {str(k): float(v) for k, v in policy["noise_weights"].items()}
    actions: list[str] = []
    reasons: list[str] = []
    changes: dict[str, dict[str, Any]] = {}

    condition = _slice_values(slices, "condition", min_n)
    if {"car", "clean"} <= set(condition.index):
        car, clean = condition["car"], condition["clean"]
        if _much_worse(car, clean, ratio, min_gap):
            old = float(policy["augmented_share"])
            new = round(min(old + share_step, share_cap), 6)
            if new > old:
                policy["augmented_share"] = new
                changes["augmented_share"] = {"from": old, "to": new}
                actions.append(f"raise augmented_share {old:.2f} -> {new:.2f}")
                reasons.append(
                    f"car WER {car:.3f} > {ratio:g} x clean WER {clean:.3f}: "
                    "more noisy training audio"
                )
            else:
                reasons.append(
                    f"car WER {car:.3f} > {ratio:g} x clean WER {clean:.3f}, but augmented_share "
                    f"is already at the cap {share_cap:.2f}"
                )

    snr = _slice_values(slices, "snr_bucket", min_n).drop(["clean", UNKNOWN], errors="ignore")
    snr = snr.reindex([b for b in SNR_BUCKETS if b in snr.index])
    if len(snr) >= 2 and snr.max() > snr.min() and snr.idxmax() == snr.index[0]:
        old_max, floor = float(policy["snr_db_max"]), float(policy["snr_db_min"]) + min_snr_span_db
        new_max = max(old_max - snr_step_db, floor)
        if new_max < old_max:
            policy["snr_db_max"] = new_max
            changes["snr_db_max"] = {"from": old_max, "to": new_max}
            actions.append(f"lower snr_db_max {old_max:g} -> {new_max:g} dB (more low-SNR samples)")
            reasons.append(
                f"worst SNR bucket is the lowest one ({snr.index[0]}: WER {snr.iloc[0]:.3f})"
            )
        else:
            reasons.append(
                f"worst SNR bucket is the lowest one ({snr.index[0]}), but snr_db_max {old_max:g} "
                f"is already at the floor snr_db_min + {min_snr_span_db:g}"
            )

    noise = _slice_values(slices, "noise_type", min_n).drop(["none", UNKNOWN], errors="ignore")
    if len(noise) >= 2 and noise.max() > noise.min():
        worst = str(noise.idxmax())
        weights = policy["noise_weights"]
        known = worst in weights
        base = (
            weights[worst]
            if known
            else (float(np.mean(list(weights.values()))) if weights else 1.0)
        )
        weights[worst] = round(base * noise_boost, 6)
        changes["noise_weights"] = {
            "from": dict(current_policy["noise_weights"]),
            "to": dict(weights),
        }
        actions.append(f"boost noise_weights[{worst!r}] {base:g} -> {weights[worst]:g}")
        reasons.append(
            f"noise type {worst!r} has the worst WER {noise[worst]:.3f} among noise types"
            + ("" if known else " and was missing from the policy (added at the mean weight)")
        )

    era = _slice_values(slices, "era", min_n)
    if {"new", "launch"} <= set(era.index) and _much_worse(
        era["new"], era["launch"], ratio, min_gap
    ):
        actions += [
            "collect/label production data with new names",
            "add hot words (new entity names) to the decoder's biasing list",
        ]
        reasons.append(
            f"era=new WER {era['new']:.3f} vs era=launch {era['launch']:.3f}: "
            "new names are not covered by training data"
        )

    entity = _slice_values(slices, "has_entity", min_n)
    if {"True", "False"} <= set(entity.index) and _much_worse(
        entity["True"], entity["False"], ratio, min_gap
    ):
        actions.append("synthesise more utterances containing entity names; add them as hot words")
        reasons.append(
            f"has_entity=True WER {entity['True']:.3f} vs has_entity=False {entity['False']:.3f}"
        )

    for verdict in diagnosis.verdict:
        reasons.append(f"diagnosis {verdict}: see actions")
    actions += diagnosis.actions
    if not changes:
        reasons.append("no slice rule changed the augmentation policy")
    return {
        "policy": policy,
        "actions": list(dict.fromkeys(actions)),
        "reasons": reasons,
        "changes": changes,
    }


# --------------------------------------------------------------------------- bundle


def _md_cell(value: object) -> str:
    """Render a value for a markdown table cell."""
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value).replace("|", "\\|")


def _md_table(frame: pd.DataFrame) -> list[str]:
    """Render a small DataFrame as markdown table lines."""
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |"]
    lines.append("|" + "|".join("---" for _ in frame.columns) + "|")
    lines += ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in frame.itertuples(False)]
    return lines


@dataclass
class ErrorAnalysis:
    """Everything the error analysis produced for one model."""

    overall: dict[str, dict[str, float]]
    slices: pd.DataFrame
    diagnosis: Diagnosis
    confusions: pd.DataFrame
    worst: pd.DataFrame
    recommendations: dict[str, Any]
    target_wer: float
    peer_wer: float | None = None
    split: str = "test"
    min_slice_n: int = 5

    def worst_slices(self, k: int = 5) -> pd.DataFrame:
        """The k slices (excluding overall) with the highest WER and at least min_slice_n rows."""
        rows = self.slices[
            (self.slices["slice"] != "overall") & (self.slices["n"] >= self.min_slice_n)
        ]
        return (
            rows.sort_values("wer", ascending=False, kind="stable").head(k).reset_index(drop=True)
        )

    def summary_markdown(self) -> str:
        """Concise markdown summary: headline numbers, verdict, worst slices, actions."""
        peer = "n/a" if self.peer_wer is None else f"{self.peer_wer:.3f}"
        lines = [
            f"## Error analysis ({self.split} split)",
            "",
            f"**Verdict:** {', '.join(self.diagnosis.verdict)} — target WER {self.target_wer:.3f},"
            f" peer WER {peer}",
            "",
            "| split | n | WER | CER |",
            "|---|---|---|---|",
        ]
        for split, m in self.overall.items():
            lines.append(f"| {split} | {int(m['n'])} | {m['wer']:.3f} | {m['cer']:.3f} |")
        lines += ["", self.diagnosis.explanation, "", "**Worst slices**", ""]
        lines += _md_table(self.worst_slices())
        if not self.confusions.empty:
            top = ", ".join(
                f"`{r.ref_word}→{r.hyp_word}` ×{r.count}"
                for r in self.confusions.head(5).itertuples()
            )
            lines += ["", f"**Top confusions:** {top}"]
        lines += ["", "**Next actions**", ""]
        lines += [f"- {a}" for a in self.recommendations.get("actions", [])]
        changes = self.recommendations.get("changes", {})
        if changes:
            lines += ["", "**Policy changes**", ""]
            lines += [f"- `{k}`: {c['from']} → {c['to']}" for k, c in changes.items()]
        return "\n".join(lines) + "\n"


def analyse(
    predictions: pd.DataFrame,
    target_wer: float,
    peer_wer: float | None,
    current_policy: Mapping[str, Any],
    *,
    split: str = "test",
    k: int = 20,
    min_slice_n: int = 5,
    tolerance: float = 0.02,
) -> ErrorAnalysis:
    """Full error analysis: per-split metrics, slices, diagnosis, confusions, recommendations."""
    validate_predictions(predictions)
    missing = [s for s in SPLITS if not (predictions["split"] == s).any()]
    if missing:
        present = sorted(map(str, predictions["split"].unique()))
        raise ValueError(
            f"expected rows for splits {list(SPLITS)}; missing {missing}, got {present}"
        )
    per = _per_utterance(predictions)
    overall: dict[str, dict[str, float]] = {}
    for name in [*SPLITS, *sorted(set(map(str, per["split"])) - set(SPLITS))]:
        rows = per[per["split"] == name]
        overall[name] = {
            "wer": _ratio(rows["word_errors"].sum(), rows["ref_words"].sum()),
            "cer": _ratio(rows["char_errors"].sum(), rows["ref_chars"].sum()),
            "n": int(len(rows)),
        }
    chosen = _split_rows(predictions, split)
    slices = _slice_table(per[(predictions["split"] == split).to_numpy()])
    diagnosis = diagnose(
        overall["train"]["wer"],
        overall["dev"]["wer"],
        overall["test"]["wer"],
        target_wer,
        peer_wer,
        tolerance=tolerance,
    )
    return ErrorAnalysis(
        overall=overall,
        slices=slices,
        diagnosis=diagnosis,
        confusions=top_confusions(chosen, k=k),
        worst=worst_utterances(chosen, k=k),
        recommendations=recommendations(slices, diagnosis, current_policy, min_n=min_slice_n),
        target_wer=float(target_wer),
        peer_wer=None if peer_wer is None else float(peer_wer),
        split=split,
        min_slice_n=min_slice_n,
    )


# --------------------------------------------------------------------------- plots & HTML


def _plot_wer_by_slice(slices: pd.DataFrame, target_wer: float, path: Path) -> Path:
    """Horizontal WER bars, one panel per slice kind, with overall and target lines."""
    from matplotlib.figure import Figure  # lazy: no plotting work at import; Agg canvas, no pyplot

    kinds = [k for k in SLICE_KINDS if (slices["slice"] == k).any()] or ["overall"]
    overall = slices.loc[slices["slice"] == "overall", "wer"]
    overall_wer = float(overall.iloc[0]) if len(overall) else math.nan
    ncols = min(3, len(kinds))
    nrows = math.ceil(len(kinds) / ncols)
    sizes = [int((slices["slice"] == k).sum()) for k in kinds]
    heights = [max(2.0, 0.3 * max(sizes[r * ncols : (r + 1) * ncols]) + 1.0) for r in range(nrows)]
    fig = Figure(figsize=(5 * ncols, sum(heights)), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, gridspec_kw={"height_ratios": heights})
    xmax = (
        max([target_wer, overall_wer if math.isfinite(overall_wer) else 0, *slices["wer"]]) * 1.15
    )
    for ax, kind in zip(axes.flat, kinds, strict=False):
        rows = slices[slices["slice"] == kind]
        labels = [f"{v} (n={n})" for v, n in zip(rows["value"], rows["n"], strict=True)]
        ax.barh(labels, rows["wer"], color="tab:blue")
        ax.invert_yaxis()
        if math.isfinite(overall_wer):
            ax.axvline(
                overall_wer, color="black", linestyle="--", label=f"overall {overall_wer:.3f}"
            )
        ax.axvline(target_wer, color="red", label=f"target {target_wer:.3f}")
        ax.set_xlim(0, xmax or 1.0)
        ax.set_title(kind)
        ax.set_xlabel("WER")
        ax.tick_params(axis="y", labelsize=8)
    axes.flat[0].legend(loc="lower right", fontsize=8)
    for ax in list(axes.flat)[len(kinds) :]:
        ax.set_visible(False)
    fig.savefig(path, dpi=90)
    return path


def _plot_wer_vs_snr(slices: pd.DataFrame, target_wer: float, path: Path) -> Path:
    """WER per SNR bucket for car audio, with clean WER and target as reference lines."""
    from matplotlib.figure import Figure

    snr = slices[slices["slice"] == "snr_bucket"].set_index("value")
    buckets = [b for b in SNR_BUCKETS if b in snr.index and b != "clean"]
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    if buckets:
        ax.plot(buckets, snr.loc[buckets, "wer"], marker="o", label="car")
    else:
        ax.text(
            0.5, 0.5, "no car audio in this split", ha="center", va="center", transform=ax.transAxes
        )
    if "clean" in snr.index:
        ax.axhline(float(snr.loc["clean", "wer"]), color="green", linestyle="--", label="clean")
    ax.axhline(target_wer, color="red", label=f"target {target_wer:.3f}")
    ax.set_xlabel("SNR bucket")
    ax.set_ylabel("WER")
    ax.set_ylim(bottom=0)
    ax.set_title("WER vs SNR (car audio)")
    ax.legend()
    fig.savefig(path, dpi=90)
    return path


def _plot_bias_variance(
    overall: Mapping[str, Mapping[str, float]],
    target_wer: float,
    peer_wer: float | None,
    path: Path,
) -> Path:
    """Train/dev/test WER bars with target and peer lines: the bias/variance picture."""
    from matplotlib.figure import Figure

    splits = [s for s in SPLITS if s in overall]
    values = [overall[s]["wer"] for s in splits]
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    bars = ax.bar(splits, values, color=["tab:blue", "tab:orange", "tab:purple"][: len(splits)])
    ax.bar_label(bars, fmt="%.3f")
    ax.axhline(target_wer, color="red", label=f"target {target_wer:.3f}")
    if peer_wer is not None:
        ax.axhline(peer_wer, color="gray", linestyle="--", label=f"peer {peer_wer:.3f}")
    ax.set_ylabel("WER")
    ax.set_ylim(0, max([target_wer, peer_wer or 0.0, *values]) * 1.2 or 1.0)
    wers = {s: overall[s]["wer"] for s in splits}
    if {"train", "dev", "test"} <= set(wers):
        ax.set_title(
            f"avoidable bias {wers['train'] - target_wer:+.3f} | "
            f"variance {wers['dev'] - wers['train']:+.3f} | "
            f"mismatch {wers['test'] - wers['dev']:+.3f}"
        )
    ax.legend()
    fig.savefig(path, dpi=90)
    return path


def write_html_report(analysis: ErrorAnalysis, out_dir: Path) -> Path:
    """Write error_analysis.html plus its PNG plots into out_dir; return the HTML path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = {
        "WER by slice": _plot_wer_by_slice(
            analysis.slices, analysis.target_wer, out_dir / "wer_by_slice.png"
        ),
        "WER vs SNR": _plot_wer_vs_snr(
            analysis.slices, analysis.target_wer, out_dir / "wer_vs_snr.png"
        ),
        "Bias / variance": _plot_bias_variance(
            analysis.overall, analysis.target_wer, analysis.peer_wer, out_dir / "bias_variance.png"
        ),
    }
    esc = html.escape
    overall = pd.DataFrame(
        [{"split": s, **m} for s, m in analysis.overall.items()],
        columns=["split", "n", "wer", "cer"],
    )
    rec = analysis.recommendations
    fmt = "{:.3f}".format
    body = [
        f"<h1>Error analysis ({esc(analysis.split)} split)</h1>",
        f"<p><b>Verdict:</b> {esc(', '.join(analysis.diagnosis.verdict))}</p>",
        f"<p>{esc(analysis.diagnosis.explanation)}</p>",
        overall.to_html(index=False, float_format=fmt),
        "<h2>Next actions</h2><ul>",
        *(f"<li>{esc(a)}</li>" for a in rec.get("actions", [])),
        "</ul><h2>Reasons</h2><ul>",
        *(f"<li>{esc(r)}</li>" for r in rec.get("reasons", [])),
        "</ul><h2>Next augmentation policy</h2>",
        f"<pre>{esc(json.dumps(rec.get('policy', {}), indent=2, default=str))}</pre>",
        *(
            f'<h2>{esc(title)}</h2><img src="{esc(p.name)}" alt="{esc(title)}">'
            for title, p in plots.items()
        ),
        "<h2>Slice metrics</h2>",
        analysis.slices.to_html(index=False, float_format=fmt),
        "<h2>Top confusions</h2>",
        analysis.confusions.to_html(index=False),
        "<h2>Worst utterances</h2>",
        analysis.worst.to_html(index=False, float_format=fmt),
    ]
    page = (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>Error analysis</title>"
        "<style>body{font-family:sans-serif;margin:2em;max-width:1200px}"
        "table{border-collapse:collapse;font-size:0.9em}td,th{border:1px solid #ccc;"
        "padding:2px 6px}img{max-width:100%}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
    path = out_dir / "error_analysis.html"
    path.write_text(page, encoding="utf-8")
    return path
