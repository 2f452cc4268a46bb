"""Per-engine slices, and the never-heard synthesizers' own slices in the error analysis."""

from __future__ import annotations

import math

import pandas as pd

from tasks.evaluation import analyse, slice_metrics
from tasks.evaluation.report import summary_markdown


def _row(i: int, split: str, synthesizer: str, hypothesis: str, condition: str = "clean") -> dict:
    return {
        "utterance_id": f"u{i:03d}",
        "split": split,
        "reference": "play jazz music now",
        "hypothesis": hypothesis,
        "confidence": 0.9,
        "condition": condition,
        "snr_db": 5.0 if condition == "car" else math.nan,
        "noise_type": "engine" if condition == "car" else "none",
        "voice": f"{synthesizer}/v{i % 2}",
        "synthesizer": synthesizer,
        "duration_s": 2.0,
        "intent": "play_music",
        "era": "launch",
        "has_entity": False,
    }


def _predictions() -> pd.DataFrame:
    rows = []
    for i in range(8):
        rows.append(_row(i, "train", "espeak", "play jazz music now"))
        rows.append(_row(100 + i, "dev", "flite", "play jazz music now"))
        # espeak perfect, flite one word in four wrong, on test
        rows.append(_row(200 + i, "test", "espeak", "play jazz music now"))
        rows.append(_row(300 + i, "test", "flite", "play jazz music how"))
        # never heard: festival-hts half wrong clean, all wrong in the car
        rows.append(_row(400 + i, "cross_synth", "festival-hts", "play jazz chess"))
        rows.append(_row(500 + i, "cross_synth", "festival-hts", "", condition="car"))
    return pd.DataFrame(rows)


def _value(table: pd.DataFrame, kind: str, value: str) -> float:
    row = table[(table["slice"] == kind) & (table["value"] == value)]
    assert len(row) == 1, (kind, value, table)
    return float(row["wer"].iloc[0])


def test_engine_slices_group_synthesizers_of_one_engine() -> None:
    frame = _predictions()
    frame.loc[frame["utterance_id"] == "u300", "synthesizer"] = "flite-x"
    table = slice_metrics(frame)
    assert _value(table, "engine", "espeak") == 0.0
    assert _value(table, "engine", "flite") == 0.25  # "flite" and "flite-x" together


def test_never_heard_synthesizers_have_their_own_slices() -> None:
    policy = {"augmented_share": 0.5, "snr_db_min": 0.0, "snr_db_max": 20.0, "noise_weights": {}}
    analysis = analyse(_predictions(), 0.1, None, policy)
    assert analysis.held_out is not None
    assert _value(analysis.held_out, "synthesizer_condition", "festival-hts / clean") == 0.5
    assert _value(analysis.held_out, "synthesizer_condition", "festival-hts / car") == 1.0
    assert _value(analysis.held_out, "synthesizer", "festival-hts") == 0.75
    assert "festival-hts / car" in summary_markdown(analysis)
    # the test split's slices are unchanged by the held-out rows
    assert set(analysis.slices.loc[analysis.slices["slice"] == "synthesizer", "value"]) == {
        "espeak",
        "flite",
    }
