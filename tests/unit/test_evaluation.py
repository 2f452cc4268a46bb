"""Unit tests for the tasks.evaluation package (hand-built frames, no models)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pandera.errors import SchemaErrors

from data_contracts.evaluation import PREDICTION_COLUMNS, Predictions, SliceMetrics
from data_contracts.scoping import AugmentationPolicy
from tasks.evaluation import (
    DEL,
    DURATION_BUCKETS,
    INS,
    SLICE_KINDS,
    SNR_BUCKETS,
    Diagnosis,
    analyse,
    cer,
    diagnose,
    duration_bucket,
    recommendations,
    slice_metrics,
    snr_bucket,
    summary_markdown,
    top_confusions,
    wer,
    worst_utterances,
    write_html_report,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
POLICY = {
    "augmented_share": 0.3,
    "snr_db_min": 0.0,
    "snr_db_max": 20.0,
    "noise_weights": {"engine": 1.0, "rain": 1.0},
    "reverb_share": 0.3,
    "device_share": 0.3,
    "telephone_share": 0.15,
    "level_share": 0.2,
}


def _row(i: int, **overrides: object) -> dict[str, object]:
    """One prediction row with sensible clean-audio defaults."""
    row: dict[str, object] = {
        "utterance_id": f"u{i:03d}",
        "split": "test",
        "reference": "play jazz music",
        "hypothesis": "play jazz music",
        "confidence": 0.9,
        "condition": "clean",
        "snr_db": math.nan,
        "noise_type": "none",
        "voice": "v1",
        "synthesizer": "tts_a",
        "duration_s": 2.0,
        "intent": "play_music",
        "era": "launch",
        "has_entity": False,
    }
    row.update(overrides)
    return row


def _frame(rows: list[dict[str, object]]) -> pd.DataFrame:
    """DataFrame from rows built with _row."""
    return pd.DataFrame(rows)


def _car(i: int, snr: float, noise: str, **overrides: object) -> dict[str, object]:
    """A car-audio row."""
    return _row(i, condition="car", snr_db=snr, noise_type=noise, **overrides)


def _mixed_predictions() -> pd.DataFrame:
    """Train/dev/test frame where car (esp. low SNR, engine noise) and era=new are worse."""
    rows: list[dict[str, object]] = []
    i = 0
    for split, clean_bad, car_bad in (("train", 0, 1), ("dev", 1, 3), ("test", 1, 6)):
        for j in range(10):
            i += 1
            hyp = "play jazz mix" if j < clean_bad else "play jazz music"
            rows.append(_row(i, split=split, hypothesis=hyp, voice=f"v{j % 2}"))
        for j in range(10):
            i += 1
            snr = -2.0 if j < 5 else 15.0
            noise = "engine" if j % 2 == 0 else "rain"
            hyp = "play chess" if j < car_bad else "play jazz music"
            rows.append(
                _car(i, snr, noise, split=split, hypothesis=hyp, era="new" if j < 4 else "launch")
            )
    return _frame(rows)


# --------------------------------------------------------------------------- WER / CER


@pytest.mark.parametrize(
    ("refs", "hyps", "expected"),
    [
        (["play jazz music"], ["play jazz music"], 0.0),  # perfect match
        (["play jazz"], [""], 1.0),  # empty hypothesis: all deletions
        ([""], ["play jazz"], 2.0),  # empty reference: insertions counted
        ([""], [""], 0.0),  # all empty
        (["", ""], ["", ""], 0.0),
        (["a b c d"], ["a x c"], 0.5),  # 1 substitution + 1 deletion over 4 words
        (["a", "b c d"], ["x", "b c d"], 0.25),  # corpus level, not mean of per-utterance
        (["a b", ""], ["a b", "x"], 0.5),  # empty reference inside a corpus
        (["  a   b "], ["a b"], 0.0),  # whitespace is normalised
    ],
)
def test_wer_edge_cases(refs: list[str], hyps: list[str], expected: float) -> None:
    assert wer(refs, hyps) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("refs", "hyps", "expected"),
    [
        (["abc"], ["abc"], 0.0),
        (["abc"], ["abd"], 1 / 3),
        (["ab"], [""], 1.0),
        ([""], ["ab"], 2.0),
        ([""], [""], 0.0),
        (["ab", "cd"], ["ab", "ce"], 0.25),
    ],
)
def test_cer_edge_cases(refs: list[str], hyps: list[str], expected: float) -> None:
    assert cer(refs, hyps) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("ref", "hyp", "expected"),
    [
        ("call mom", "call mom", 0.0),
        ("call mom", "call tom", 0.5),
        ("call mom", "", 1.0),
        ("", "", 0.0),
    ],
)
def test_wer_accepts_single_strings(ref: str, hyp: str, expected: float) -> None:
    assert wer(ref, hyp) == pytest.approx(expected)
    assert wer(ref, hyp) == wer([ref], [hyp])


def test_wer_treats_missing_hypothesis_as_empty_and_checks_lengths() -> None:
    assert wer(["a b"], [None]) == 1.0  # type: ignore[list-item]
    assert wer(["a b"], [float("nan")]) == 1.0  # type: ignore[list-item]
    assert wer([], []) == 0.0
    with pytest.raises(ValueError, match="2 references and 1 hypotheses"):
        wer(["a", "b"], ["a"])


# --------------------------------------------------------------------------- slices


def test_missing_columns_are_listed() -> None:
    frame = _frame([_row(1)]).drop(columns=["snr_db", "era"])
    with pytest.raises(SchemaErrors, match=r"(?s)column 'snr_db' not in dataframe.*column 'era'"):
        slice_metrics(frame)


def test_unknown_split_raises_with_present_splits() -> None:
    with pytest.raises(ValueError, match=r"split == 'test'.*\['dev'\]"):
        slice_metrics(_frame([_row(1, split="dev")]))


@pytest.mark.parametrize(
    ("condition", "snr", "bucket"),
    [
        ("car", -0.1, "<0 dB"),
        ("car", 0.0, "0-5 dB"),
        ("car", 5.0, "5-10 dB"),
        ("car", 19.9, "10-20 dB"),
        ("car", 20.0, ">=20 dB"),
        ("clean", math.nan, "clean"),
        ("car", math.nan, "unknown"),
    ],
)
def test_snr_bucket(condition: str, snr: float, bucket: str) -> None:
    assert snr_bucket(condition, snr) == bucket


@pytest.mark.parametrize(
    ("duration", "bucket"), [(1.49, "<1.5 s"), (1.5, "1.5-3 s"), (3.0, "3-5 s"), (5.0, ">=5 s")]
)
def test_duration_bucket(duration: float, bucket: str) -> None:
    assert duration_bucket(duration) == bucket


def test_telephone_copies_have_their_own_condition_slice() -> None:
    rows = [_row(1), _row(2, utterance_id="u002+tel", condition="telephone", hypothesis="play")]
    get = slice_metrics(_frame(rows)).set_index(["slice", "value"])
    assert get.loc[("condition", "telephone"), "n"] == 1
    assert get.loc[("condition", "telephone"), "wer"] == pytest.approx(2 / 3)
    assert get.loc[("condition", "clean"), "wer"] == 0
    assert get.loc[("snr_bucket", "clean"), "n"] == 2  # no noise was added to either


def test_slice_metrics_counts_and_values() -> None:
    rows = [
        _row(1),
        _row(2, hypothesis="play jazz"),
        _car(3, -3.0, "engine", hypothesis="play chess music", duration_s=1.0),
        _car(4, 12.0, "rain", duration_s=6.0, era="new", has_entity=True),
        _row(5, split="train", hypothesis=""),
    ]
    table = slice_metrics(_frame(rows))
    assert list(table.columns) == ["slice", "value", "n", "wer", "cer"]
    assert set(table["slice"]) == {"overall", *SLICE_KINDS}
    get = table.set_index(["slice", "value"])
    assert get.loc[("overall", "all"), "n"] == 4  # train row excluded
    assert get.loc[("overall", "all"), "wer"] == pytest.approx(2 / 12)
    assert get.loc[("condition", "clean"), "n"] == 2
    assert get.loc[("condition", "car"), "n"] == 2
    assert get.loc[("condition", "clean"), "wer"] == pytest.approx(1 / 6)
    assert get.loc[("condition", "car"), "wer"] == pytest.approx(1 / 6)
    assert get.loc[("snr_bucket", "<0 dB"), "wer"] == pytest.approx(1 / 3)
    assert get.loc[("snr_bucket", "clean"), "n"] == 2
    assert get.loc[("noise_type", "none"), "n"] == 2
    assert get.loc[("has_entity", "True"), "n"] == 1
    assert get.loc[("era", "new"), "wer"] == 0.0
    snr_order = list(table.loc[table["slice"] == "snr_bucket", "value"])
    assert snr_order == [b for b in SNR_BUCKETS if b in snr_order]
    durations = list(table.loc[table["slice"] == "duration_bucket", "value"])
    assert durations == [b for b in DURATION_BUCKETS if b in durations]
    # every slice kind partitions the split
    per_kind = table[table["slice"] != "overall"].groupby("slice")["n"].sum()
    assert (per_kind == 4).all()


@pytest.mark.parametrize(
    ("rows", "kind", "expected"),
    [
        # one clip: every slice kind has exactly one value holding it
        ([_row(1)], "condition", {"clean": (1, 0.0)}),
        # an empty hypothesis (None or NaN from a CSV) counts as deleting every word
        (
            [_row(1, hypothesis=None), _row(2, hypothesis=math.nan)],
            "condition",
            {"clean": (2, 1.0)},
        ),
        # car audio without an SNR falls in the unknown bucket, after the known ones
        (
            [_car(1, math.nan, "engine"), _car(2, 3.0, "engine")],
            "snr_bucket",
            {"0-5 dB": (1, 0.0), "unknown": (1, 0.0)},
        ),
        # has_entity values are strings in the table
        (
            [_row(1, has_entity=True), _row(2, has_entity=False, hypothesis="play")],
            "has_entity",
            {"False": (1, 2 / 3), "True": (1, 0.0)},
        ),
        # an empty reference with an inserted word: the raw insertion count
        ([_row(1, reference="", hypothesis="jazz")], "voice", {"v1": (1, 1.0)}),
    ],
)
def test_slice_metrics_edge_cases(
    rows: list[dict[str, object]], kind: str, expected: dict[str, tuple[int, float]]
) -> None:
    table = slice_metrics(_frame(rows))
    got = table[table["slice"] == kind]
    assert list(got["value"]) == list(expected)
    for value, (n, wer_value) in expected.items():
        row = got[got["value"] == value].iloc[0]
        assert (row["n"], row["wer"]) == (n, pytest.approx(wer_value))
    assert table.iloc[0]["slice"] == "overall" and table.iloc[0]["n"] == len(rows)


def test_slice_wer_matches_corpus_wer() -> None:
    frame = _mixed_predictions()
    table = slice_metrics(frame, split="dev").set_index(["slice", "value"])
    car = frame[(frame["split"] == "dev") & (frame["condition"] == "car")]
    assert table.loc[("condition", "car"), "wer"] == pytest.approx(
        wer(list(car["reference"]), list(car["hypothesis"]))
    )
    assert table.loc[("condition", "car"), "cer"] == pytest.approx(
        cer(list(car["reference"]), list(car["hypothesis"]))
    )


# --------------------------------------------------------------------------- diagnosis


@pytest.mark.parametrize(
    ("train", "dev", "test", "target", "verdict"),
    [
        (0.20, 0.21, 0.22, 0.10, ("high bias",)),
        (0.10, 0.20, 0.21, 0.10, ("high variance",)),
        (0.10, 0.11, 0.25, 0.10, ("data mismatch",)),
        (0.05, 0.06, 0.07, 0.10, ("on target",)),
        (0.20, 0.45, 0.50, 0.10, ("high variance", "high bias", "data mismatch")),  # largest first
        (0.11, 0.125, 0.135, 0.10, ("high variance",)),  # small gaps add up: name one of them
    ],
)
def test_diagnose_verdicts(
    train: float, dev: float, test: float, target: float, verdict: tuple[str, ...]
) -> None:
    result = diagnose(train, dev, test, target, None)
    assert isinstance(result, Diagnosis)
    assert result.verdict == verdict
    assert result.actions
    assert f"{test:.3f}" in result.explanation


def test_diagnose_actions_and_peer() -> None:
    bias = diagnose(0.30, 0.31, 0.32, 0.10, 0.15)
    assert any("bigger model" in a for a in bias.actions)
    assert "0.150" in bias.explanation
    assert bias.avoidable_bias == pytest.approx(0.20)
    variance = diagnose(0.05, 0.20, 0.21, 0.10, None)
    assert any("augmentation" in a for a in variance.actions)
    mismatch = diagnose(0.05, 0.06, 0.30, 0.10, None)
    assert any("voices like the test voices" in a for a in mismatch.actions)


@pytest.mark.parametrize("bad", [math.nan, -0.1, math.inf, "x"])
def test_diagnose_rejects_bad_numbers(bad: object) -> None:
    with pytest.raises(ValueError, match="expected train_wer"):
        diagnose(bad, 0.1, 0.1, 0.1, None)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- error analysis


def test_top_confusions_counts_subs_dels_ins() -> None:
    frame = _frame(
        [
            _row(1, hypothesis="play chess music"),
            _row(2, hypothesis="play chess music"),
            _row(3, hypothesis="play jazz"),
            _row(4, hypothesis="play jazz music now"),
        ]
    )
    conf = top_confusions(frame)
    assert list(conf.columns) == ["ref_word", "hyp_word", "count"]
    assert conf.iloc[0].tolist() == ["jazz", "chess", 2]
    pairs = {(r, h): n for r, h, n in conf.itertuples(index=False)}
    assert pairs[("music", DEL)] == 1
    assert pairs[(INS, "now")] == 1
    assert len(top_confusions(frame, k=1)) == 1
    assert top_confusions(_frame([_row(1)])).empty


def test_worst_utterances_orders_by_wer_then_duration() -> None:
    frame = _frame(
        [
            _row(1, hypothesis="play jazz music"),
            _row(2, hypothesis="play", duration_s=1.0),
            _row(3, hypothesis="play", duration_s=4.0),
            _row(4, hypothesis="", duration_s=2.0),
        ]
    )
    worst = worst_utterances(frame, k=3)
    assert list(worst["utterance_id"]) == ["u004", "u003", "u002"]
    assert worst["wer"].tolist() == pytest.approx([1.0, 2 / 3, 2 / 3])


def _slices(car_wer: float, clean_wer: float = 0.10, **extra: list[tuple]) -> pd.DataFrame:
    """A hand-built slice table."""
    rows = [
        ("overall", "all", 100, (car_wer + clean_wer) / 2, 0.05),
        ("condition", "clean", 50, clean_wer, 0.05),
        ("condition", "car", 50, car_wer, 0.05),
    ]
    for kind, values in extra.items():
        rows += [(kind, v, n, w, 0.05) for v, n, w in values]
    return pd.DataFrame(rows, columns=["slice", "value", "n", "wer", "cer"])


ON_TARGET = diagnose(0.05, 0.06, 0.07, 0.10, None)


def test_recommendations_raise_share_when_car_worse() -> None:
    rec = recommendations(_slices(car_wer=0.20), ON_TARGET, POLICY)
    assert set(rec) >= {"policy", "actions", "reasons"}
    assert rec["policy"]["augmented_share"] == pytest.approx(0.4)
    assert any("car WER 0.200" in r for r in rec["reasons"])
    assert POLICY["augmented_share"] == 0.3  # input untouched


def test_recommendations_raise_telephone_share_when_telephone_is_worse() -> None:
    slices = _slices(car_wer=0.11, condition=[("telephone", 30, 0.30)])
    rec = recommendations(slices, ON_TARGET, POLICY)
    assert rec["policy"]["telephone_share"] == pytest.approx(0.25)
    assert rec["changes"]["telephone_share"] == {"from": 0.15, "to": 0.25}
    assert any("telephone WER 0.300" in r for r in rec["reasons"])
    # the retrain applies it: the policy it names is a valid scope section
    AugmentationPolicy(
        **{**AugmentationPolicy().model_dump(), **rec["policy"], "noise_types": ["engine", "rain"]}
    )
    same = recommendations(
        _slices(car_wer=0.11, condition=[("telephone", 30, 0.11)]), ON_TARGET, POLICY
    )
    assert same["policy"]["telephone_share"] == 0.15


def test_recommendations_keep_share_when_car_not_worse() -> None:
    rec = recommendations(_slices(car_wer=0.11), ON_TARGET, POLICY)
    assert rec["policy"] == POLICY
    assert rec["policy"] is not POLICY
    assert rec["reasons"]


def test_recommendations_cap_share() -> None:
    rec = recommendations(_slices(car_wer=0.30), ON_TARGET, {**POLICY, "augmented_share": 0.75})
    assert rec["policy"]["augmented_share"] == pytest.approx(0.8)
    rec = recommendations(_slices(car_wer=0.30), ON_TARGET, {**POLICY, "augmented_share": 0.8})
    assert rec["policy"]["augmented_share"] == pytest.approx(0.8)
    assert any("cap" in r for r in rec["reasons"])


def test_recommendations_snr_noise_and_era_rules() -> None:
    slices = _slices(
        car_wer=0.11,
        snr_bucket=[("<0 dB", 20, 0.30), ("10-20 dB", 20, 0.10), ("clean", 50, 0.10)],
        noise_type=[("engine", 25, 0.25), ("rain", 25, 0.12), ("none", 50, 0.10)],
        era=[("launch", 80, 0.10), ("new", 20, 0.30)],
    )
    rec = recommendations(slices, ON_TARGET, POLICY)
    assert rec["policy"]["snr_db_max"] == pytest.approx(15.0)
    assert rec["policy"]["snr_db_min"] == pytest.approx(0.0)
    assert rec["policy"]["noise_weights"] == {"engine": 1.5, "rain": 1.0}
    assert POLICY["noise_weights"] == {"engine": 1.0, "rain": 1.0}
    assert "collect/label production data with new names" in rec["actions"]
    assert any("hot words" in a for a in rec["actions"])
    # snr_db_max never drops below snr_db_min + 5
    floored = recommendations(slices, ON_TARGET, {**POLICY, "snr_db_max": 5.0})
    assert floored["policy"]["snr_db_max"] == pytest.approx(5.0)


def test_recommendations_include_diagnosis_actions_and_validate_policy() -> None:
    variance = diagnose(0.05, 0.20, 0.21, 0.10, None)
    rec = recommendations(_slices(car_wer=0.11), variance, POLICY)
    assert all(a in rec["actions"] for a in variance.actions)
    with pytest.raises(ValueError, match=r"missing keys \['noise_weights'\]"):
        recommendations(
            _slices(0.2), ON_TARGET, {k: v for k, v in POLICY.items() if k != "noise_weights"}
        )


# --------------------------------------------------------------------------- bundle & report


def test_analyse_summary_and_report(tmp_path: Path) -> None:
    analysis = analyse(_mixed_predictions(), 0.10, 0.15, POLICY, min_slice_n=1)
    assert set(analysis.overall) == {"train", "dev", "test"}
    assert analysis.overall["test"]["n"] == 20
    assert analysis.overall["train"]["wer"] < analysis.overall["test"]["wer"]
    assert analysis.slices["n"].iloc[0] == 20
    assert analysis.recommendations["policy"]["augmented_share"] == pytest.approx(0.4)
    md = summary_markdown(analysis)
    assert "Verdict" in md and analysis.diagnosis.verdict[0] in md
    assert f"{analysis.overall['test']['wer']:.3f}" in md

    html_path = write_html_report(analysis, tmp_path / "report")
    assert html_path == tmp_path / "report" / "error_analysis.html"
    page = html_path.read_text()
    pngs = sorted((tmp_path / "report").glob("*.png"))
    assert [p.name for p in pngs] == ["bias_variance.png", "wer_by_slice.png", "wer_vs_snr.png"]
    for png in pngs:
        assert png.read_bytes()[:8] == PNG_MAGIC
        assert png.stat().st_size > 1000
        assert f'src="{png.name}"' in page
    assert "<table" in page and analysis.diagnosis.explanation.split(".")[0] in page


def test_analyse_requires_all_splits() -> None:
    frame = _mixed_predictions()
    with pytest.raises(ValueError, match=r"missing \['dev'\]"):
        analyse(frame[frame["split"] != "dev"], 0.1, None, POLICY)


def test_module_import_does_not_load_matplotlib() -> None:
    # the pure modules load neither plotting nor orchestration
    root = Path(__file__).resolve().parents[2]
    code = "import sys, tasks.evaluation; print({'matplotlib', 'prefect'} & set(sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert out.stdout.strip() == "set()"


def test_numpy_floats_accepted() -> None:
    assert diagnose(np.float32(0.1), 0.1, 0.1, 0.1, None).verdict == ("on target",)


def test_analyse_ignores_index_labels() -> None:
    frame = _mixed_predictions()
    frame.index = [0] * len(frame)  # duplicate labels must not duplicate rows
    analysis = analyse(frame, 0.10, None, POLICY, min_slice_n=1)
    assert analysis.slices["n"].iloc[0] == 20
    assert analysis.overall["train"]["n"] == 20


# --------------------------------------------------------------------------- contracts


def test_prediction_contract_names_the_columns_the_rows_have() -> None:
    assert list(PREDICTION_COLUMNS) == list(_row(1))


def test_prediction_contract_coerces_types() -> None:
    frame = _frame([_row(1, has_entity=1, duration_s="2.5", confidence=1), _row(2, snr_db=None)])
    checked = Predictions.validate(frame)
    assert checked["has_entity"].tolist() == [True, False]
    assert checked["duration_s"].dtype == float and checked["confidence"].dtype == float


@pytest.mark.parametrize(
    ("broken", "check"),
    [
        ({"split": "holdout"}, "isin"),
        ({"condition": "tunnel"}, "isin"),
        ({"confidence": 1.5}, "less_than_or_equal_to"),
        ({"duration_s": 0.0}, "greater_than"),
        ({"utterance_id": "u000"}, "field_uniqueness"),
        ({"extra": "column"}, "column_in_schema"),
    ],
)
def test_prediction_contract_rejects_a_broken_frame(broken: dict[str, object], check: str) -> None:
    frame = _frame([_row(0), _row(1, **broken)])
    with pytest.raises(SchemaErrors, match=check):
        slice_metrics(frame)
    with pytest.raises(SchemaErrors, match=check):
        analyse(frame, 0.1, None, POLICY)


def test_slice_contract_rejects_a_broken_table() -> None:
    good = _slices(car_wer=0.2)
    SliceMetrics.validate(good)
    with pytest.raises(SchemaErrors, match="greater_than_or_equal_to"):
        recommendations(good.assign(wer=-0.1), ON_TARGET, POLICY)
    with pytest.raises(SchemaErrors, match="one row per"):
        recommendations(pd.concat([good, good]), ON_TARGET, POLICY)
    with pytest.raises(SchemaErrors, match="column 'n' not in dataframe"):
        recommendations(good.drop(columns=["n"]), ON_TARGET, POLICY)


def test_slice_metrics_output_meets_its_contract() -> None:
    table = slice_metrics(_mixed_predictions())
    assert SliceMetrics.validate(table).shape == table.shape
    assert table["n"].dtype == int


def test_summary_tables_are_markdown() -> None:
    analysis = analyse(_mixed_predictions(), 0.10, None, POLICY, min_slice_n=1)
    lines = summary_markdown(analysis).splitlines()
    head = lines.index("| split | n | WER | CER |")
    assert lines[head + 1] == "| --- | --- | --- | --- |"
    test = analysis.overall["test"]
    assert f"| test | 20 | {test['wer']:.3f} | {test['cer']:.3f} |" in lines
    assert "| slice | value | n | wer | cer |" in lines


def test_error_analysis_task_tunes_the_scope_policy_on_dev(tmp_path: Path) -> None:
    import json

    from data_contracts.scoping import AugmentationPolicy, Targets
    from tasks.error_analysis import run_error_analysis

    policy = AugmentationPolicy(noise_types=["engine", "rain"], augmented_share=0.3, snr_db_min=0)
    analysis, html_path = run_error_analysis.fn(
        _mixed_predictions(), Targets(), None, policy, tmp_path / "ea"
    )
    saved = json.loads((tmp_path / "ea" / "recommendations.json").read_text())
    assert set(saved["policy"]) == set(AugmentationPolicy.TUNABLE_KEYS)
    assert saved["policy"]["augmented_share"] == pytest.approx(0.4)  # dev car WER is worse
    assert AugmentationPolicy.model_validate({**policy.model_dump(), **saved["policy"]})
    assert html_path.is_file() and (tmp_path / "ea" / "slices.csv").is_file()
    assert analysis.slices.iloc[0]["n"] == 20


def test_prediction_frame_of_an_augmented_manifest_meets_the_contract() -> None:
    from tasks.inference import prediction_frame

    rows = []
    for i, (split, condition) in enumerate(
        [("train", "clean"), ("dev", "car"), ("test", "clean"), ("cross_synth", "car")]
    ):
        car = condition == "car"
        rows.append(
            {
                "utterance_id": f"u{i}" + ("+engine" if car else ""),
                "split": split,
                "transcript": "call mom",
                "hypothesis": "call tom",
                "confidence": np.float32(0.5),
                "condition": condition,
                "snr_db": "3.5" if car else "",  # as read back from CSV
                "noise_type": "engine" if car else "none",
                "voice": f"v{i}",
                "synthesizer": "espeak",
                "duration_s": 1.5,
                "intent": "call",
                "era": "launch",
                "entities": "mom" if car else "",
            }
        )
    checked = Predictions.validate(prediction_frame(pd.DataFrame(rows)))
    assert checked["has_entity"].tolist() == [False, True, False, True]
    assert checked["snr_db"].isna().tolist() == [True, False, True, False]


def test_gate_report_shows_decision_serving_targets_and_analysis() -> None:
    from data_contracts.scoping import Targets
    from tasks.error_analysis import decide_promotion, gate_report_markdown

    analysis = analyse(_mixed_predictions(), 0.10, None, POLICY, min_slice_n=1)
    decision = decide_promotion.fn(analysis.slices, None, Targets(), 0.05, bootstrap=True)
    md = gate_report_markdown(analysis, decision, "7", None, [])
    assert md.startswith("# Model version 7: PROMOTED to champion\n(champion before: none)")
    assert all(f"- {r}" in md for r in decision.reasons)
    assert "p95 latency <= 100 ms" in md and "throughput >= 10 req/s" in md
    assert summary_markdown(analysis) in md
