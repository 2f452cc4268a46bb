"""Unit tests for tasks.gate (hand-built slice tables)."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from pandera.errors import SchemaErrors

from data_contracts.scoping import Targets
from tasks.gate import (
    GateDecision,
    parse_target,
    promotion_gate,
    serving_target_notes,
    targets_met,
)

TARGETS = {"wer_clean": 0.10, "wer_car": 0.20, "cer_clean": 0.05, "cer_car": 0.10}


def _table(
    overall: float,
    clean: float = 0.08,
    car: float = 0.15,
    era_new: float = 0.20,
    *,
    cer_scale: float = 0.4,
    drop: tuple[str, ...] = (),
) -> pd.DataFrame:
    """A slice_metrics-shaped table; CER is WER x cer_scale."""
    rows = [
        ("overall", "all", 200, overall),
        ("condition", "clean", 100, clean),
        ("condition", "car", 100, car),
        ("era", "launch", 150, overall),
        ("era", "new", 50, era_new),
    ]
    frame = pd.DataFrame(
        [(s, v, n, w, w * cer_scale) for s, v, n, w in rows if v not in drop],
        columns=["slice", "value", "n", "wer", "cer"],
    )
    return frame


def test_targets_met_reports_values_and_missing() -> None:
    result = targets_met(_table(0.12, car=0.25, drop=("clean",)), TARGETS)
    assert result["wer_car"] == pytest.approx((0.25, 0.20, False))
    assert result["cer_car"] == pytest.approx((0.10, 0.10, True))  # equal to target counts as met
    observed, target, met = result["wer_clean"]
    assert math.isnan(observed) and target == 0.10 and met is False


@pytest.mark.parametrize(
    ("name", "parsed"),
    [
        ("wer_car", ("wer", "condition", "car")),
        ("cer_clean", ("cer", "condition", "clean")),
        ("wer_overall", ("wer", "overall", "all")),
        ("wer_era=new", ("wer", "era", "new")),
    ],
)
def test_parse_target(name: str, parsed: tuple[str, str, str]) -> None:
    assert parse_target(name) == parsed


@pytest.mark.parametrize("name", ["mer_car", "wer", "car_wer", "wer_"])
def test_parse_target_rejects_bad_names(name: str) -> None:
    with pytest.raises(ValueError, match="expected a target named"):
        parse_target(name)


def test_promotes_better_challenger() -> None:
    decision = promotion_gate(_table(0.10), _table(0.12), TARGETS, 0.05)
    assert isinstance(decision, GateDecision)
    assert decision.promote is True
    assert decision.reasons
    assert any("overall WER 0.100 <= champion 0.120" in r for r in decision.reasons)


def test_promotes_first_model_when_targets_met() -> None:
    decision = promotion_gate(_table(0.10), None, TARGETS, 0.05)
    assert decision.promote is True
    assert any("no champion" in r for r in decision.reasons)
    assert "wer_car 0.150 <= target 0.200" in decision.reasons


def test_refuses_worse_challenger() -> None:
    decision = promotion_gate(_table(0.13), _table(0.12), TARGETS, 0.05)
    assert decision.promote is False
    assert decision.reasons == ("overall WER 0.130 > champion 0.120",)


def test_refuses_missed_target_without_champion() -> None:
    decision = promotion_gate(_table(0.12, car=0.231), None, TARGETS, 0.05)
    assert decision.promote is False
    assert "wer_car 0.231 > target 0.200" in decision.reasons


def test_refuses_missing_target_slice() -> None:
    decision = promotion_gate(_table(0.10, drop=("car",)), None, TARGETS, 0.05)
    assert decision.promote is False
    assert any("wer_car" in r and "missing" in r and "0.200" in r for r in decision.reasons)


def test_refuses_slice_regression_beyond_tolerance() -> None:
    challenger = _table(0.10, era_new=0.41)
    champion = _table(0.12, era_new=0.30)
    decision = promotion_gate(challenger, champion, TARGETS, 0.05)
    assert decision.promote is False
    assert decision.reasons == (
        "slice era=new: 0.410 vs champion 0.300 (+0.110 > tolerance 0.050)",
    )


@pytest.mark.parametrize(("era_new", "promote"), [(0.35, True), (0.34, True), (0.36, False)])
def test_slice_tolerance_boundary(era_new: float, promote: bool) -> None:
    decision = promotion_gate(_table(0.10, era_new=era_new), _table(0.12, era_new=0.30), {}, 0.05)
    assert decision.promote is promote


def test_slices_missing_from_champion_are_not_compared() -> None:
    champion = _table(0.12, drop=("new",))
    decision = promotion_gate(_table(0.10, era_new=0.90), champion, {}, 0.05)
    assert decision.promote is True


def test_min_slice_n_skips_tiny_slices() -> None:
    challenger, champion = _table(0.10, era_new=0.90), _table(0.12)
    assert not promotion_gate(challenger, champion, {}, 0.05).promote
    assert promotion_gate(challenger, champion, {}, 0.05, min_slice_n=60).promote


def test_reports_every_failure() -> None:
    decision = promotion_gate(_table(0.14, car=0.25, era_new=0.50), _table(0.12), TARGETS, 0.05)
    assert decision.promote is False
    text = " ".join(decision.reasons)
    for fragment in (
        "wer_car 0.250 > target 0.200",
        "overall WER 0.140 > champion 0.120",
        "era=new",
    ):
        assert fragment in text


def test_rejects_malformed_tables() -> None:
    # the SliceMetrics contract (data_contracts.evaluation) guards both tables
    with pytest.raises(SchemaErrors, match=r"column 'cer' not in dataframe"):
        promotion_gate(_table(0.1).drop(columns=["cer"]), None, TARGETS, 0.05)
    with pytest.raises(SchemaErrors, match="one row per .slice, value.; got duplicates"):
        promotion_gate(pd.concat([_table(0.1), _table(0.1)]), None, TARGETS, 0.05)
    with pytest.raises(SchemaErrors, match="column 'wer' not in dataframe"):
        promotion_gate(_table(0.1), _table(0.1).drop(columns=["wer"]), TARGETS, 0.05)
    with pytest.raises(SchemaErrors, match="greater_than_or_equal_to"):
        targets_met(_table(0.1).assign(n=-1), TARGETS)
    with pytest.raises(ValueError, match="overall row"):
        promotion_gate(_table(0.1), _table(0.1).iloc[1:], TARGETS, 0.05)
    with pytest.raises(ValueError, match="slice_tolerance"):
        promotion_gate(_table(0.1), None, TARGETS, -0.01)


def test_gate_accepts_slice_metrics_output() -> None:
    from tasks.evaluation import slice_metrics

    row = {
        "utterance_id": "u1",
        "split": "test",
        "reference": "call mom",
        "hypothesis": "call mom",
        "confidence": 0.9,
        "condition": "car",
        "snr_db": 3.0,
        "noise_type": "engine",
        "voice": "v1",
        "synthesizer": "tts",
        "duration_s": 1.0,
        "intent": "call",
        "era": "new",
        "has_entity": True,
    }
    good = slice_metrics(pd.DataFrame([row, {**row, "utterance_id": "u2", "condition": "clean"}]))
    bad = slice_metrics(
        pd.DataFrame(
            [
                {**row, "hypothesis": "call tom"},
                {**row, "utterance_id": "u2", "condition": "clean"},
            ]
        )
    )
    assert promotion_gate(good, bad, {"wer_car": 0.2, "wer_clean": 0.2}, 0.05).promote
    decision = promotion_gate(bad, good, {"wer_car": 0.2}, 0.05)
    assert not decision.promote
    assert "wer_car 0.500 > target 0.200" in decision.reasons


def test_slice_keys_are_compared_as_strings() -> None:
    # a table read back from CSV has booleans and numbers where slice_metrics writes strings
    table = _table(0.10)
    table.loc[table["value"] == "new", "value"] = True
    assert targets_met(table, {"wer_era=True": 0.25})["wer_era=True"][2] is True


def test_serving_targets_are_read_and_left_to_the_serve_benchmark() -> None:
    (note,) = serving_target_notes(Targets(p95_latency_ms=80, min_throughput_rps=25))
    assert "80 ms" in note and "25 req/s" in note and "voicecycle bench serve" in note
    decision = promotion_gate(_table(0.10), None, TARGETS, 0.05)
    assert decision.notes == ()  # the pure gate decides on accuracy alone


def test_the_gate_task_notes_the_serving_targets_without_changing_its_decision() -> None:
    from tasks.error_analysis import decide_promotion

    targets = Targets(wer_clean=0.10, wer_car=0.20, cer_clean=0.05, cer_car=0.10)
    for challenger, champion in ((_table(0.10), None), (_table(0.13), _table(0.12))):
        pure = promotion_gate(challenger, champion, TARGETS, 0.05, min_slice_n=20)
        task = decide_promotion.fn(challenger, champion, targets, 0.05, bootstrap=False)
        assert (task.promote, task.reasons) == (pure.promote, pure.reasons)
        assert task.notes == serving_target_notes(targets)
