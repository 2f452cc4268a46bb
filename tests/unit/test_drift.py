"""Unit tests for tasks.drift (seeded synthetic prediction logs; Evidently runs for real)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pandera.errors import SchemaError

from tasks.drift import (
    DRIFT_NUMERIC,
    DRIFT_SHARE_THRESHOLD,
    MIN_WINDOW,
    DriftResult,
    decide,
    drift_features,
    oov_share,
    run_drift_report,
    window,
)

LEXICON = set(
    "play the news weather today call mom jazz music song by show me what time in".split()
)
NEW_NAMES = ["zelenskyy", "sinner", "rodrygo", "olivia", "rodrigo", "taylor", "swift"]
SHIFTED = (
    "snr_db_estimate",
    "low_band_share",
    "confidence",
    "duration_s",
    "spectral_centroid_hz",
    "spectral_rolloff_hz",
    "silence_share",
    "oov_share",
)
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def _log(n: int, seed: int, car: bool = False) -> pd.DataFrame:
    """A prediction-log-shaped frame; `car` = in-car audio asking about new names."""
    rng = np.random.default_rng(seed)
    words = sorted(LEXICON)
    transcripts = []
    for _ in range(n):
        query = list(rng.choice(words, rng.integers(1, 6)))
        if car and rng.random() < 0.6:  # a lexicon-free decoder spells out the new names
            query.append(str(rng.choice(NEW_NAMES)))
        transcripts.append(" ".join(query))
    c = 1.0 if car else 0.0
    return pd.DataFrame(
        {
            "request_id": [f"r{seed}-{i}" for i in range(n)],
            "ts": pd.date_range("2025-06-01", periods=n, freq="s", tz="UTC"),
            "transcript": transcripts,
            "duration_s": rng.gamma(6.0, 0.45, n) + 0.5 * c,
            "rms_dbfs": rng.normal(-24, 4, n) + 3 * c,
            "snr_db_estimate": rng.normal(25, 6, n) - 15 * c,
            "spectral_centroid_hz": rng.normal(1800, 300, n) - 400 * c,
            "spectral_bandwidth_hz": rng.normal(1600, 200, n),
            "spectral_rolloff_hz": rng.normal(3600, 600, n) - 800 * c,
            "low_band_share": np.clip(rng.beta(3, 7, n) + 0.3 * c, 0, 1),
            "silence_share": np.clip(rng.beta(2.5, 7.5, n) - 0.15 * c, 0, 1),
            "confidence": np.clip(rng.beta(8, 2, n) - 0.3 * c, 0, 1),
            "n_words": [len(t.split()) for t in transcripts],
        }
    )


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    """The champion's reference: 600 rows."""
    return drift_features(_log(600, seed=0), LEXICON)


def _result(share: float, n: int, drifted: tuple[str, ...] = ()) -> DriftResult:
    """A hand-built DriftResult for the pure decide() tests."""
    return DriftResult(share, drifted, 600, n, {}, None)


@pytest.mark.parametrize(
    ("transcripts", "expected"),
    [
        (["play jazz"], [0.0]),
        (["play sinner"], [0.5]),
        (["Play JAZZ"], [0.0]),
        (["zelenskyy sinner"], [1.0]),
        ([""], [0.0]),
        (["call mom", "call zelenskyy", "what time in sinner"], [0.0, 0.5, 0.25]),
    ],
)
def test_oov_share(transcripts: list[str], expected: list[float]) -> None:
    assert oov_share(transcripts, LEXICON) == pytest.approx(expected)


def test_oov_share_rejects_empty_lexicon_and_non_strings() -> None:
    with pytest.raises(ValueError, match="non-empty lexicon"):
        oov_share(["play jazz"], set())
    with pytest.raises(TypeError, match="transcript as a string"):
        oov_share([None], LEXICON)  # type: ignore[list-item]


def test_drift_features_builds_the_table() -> None:
    log = _log(5, seed=1)
    log.loc[0, "rms_dbfs"] = -np.inf
    log.loc[1, "transcript"] = "play sinner"
    table = drift_features(log, LEXICON)
    assert list(table.columns) == [*DRIFT_NUMERIC, "transcript"]
    assert np.isnan(table.loc[0, "rms_dbfs"])
    assert table.loc[1, "oov_share"] == 0.5
    with pytest.raises(SchemaError, match="column 'snr_db_estimate' not in dataframe"):
        drift_features(log.drop(columns="snr_db_estimate"), LEXICON)


def test_stable_windows_raise_no_false_alarm(reference: pd.DataFrame) -> None:
    results = [
        run_drift_report(reference, drift_features(_log(300, seed=100 + i), LEXICON), None)
        for i in range(10)
    ]
    drifted = [c for r in results for c in r.drifted_columns]
    assert drifted == [], f"false alarms in stable windows: {drifted}"
    decisions = [decide(r, DRIFT_SHARE_THRESHOLD, MIN_WINDOW, None, NOW, 60) for r in results]
    assert not any(d.drift or d.retrain for d in decisions)
    assert all(r.n_reference == 600 and r.n_current == 300 for r in results)


def test_shifted_window_drifts_and_writes_html(reference: pd.DataFrame, tmp_path: Path) -> None:
    html = tmp_path / "reports" / "drift.html"
    result = run_drift_report(reference, drift_features(_log(300, seed=7, car=True), LEXICON), html)
    assert result.drift_share >= 0.5
    assert set(SHIFTED) <= set(result.drifted_columns)
    assert set(result.per_column) == set(DRIFT_NUMERIC)
    snr = result.per_column["snr_db_estimate"]
    assert snr["drifted"] and snr["method"] == "wasserstein" and snr["score"] > 1.0
    assert not result.per_column["spectral_bandwidth_hz"]["drifted"]
    assert result.html_path == html and html.stat().st_size > 1000
    decision = decide(result, DRIFT_SHARE_THRESHOLD, MIN_WINDOW, None, NOW, 60)
    assert decision.drift and decision.retrain and "snr_db_estimate" in decision.reason


def test_per_column_threshold_and_input_checks(reference: pd.DataFrame) -> None:
    current = drift_features(_log(100, seed=3), LEXICON)
    result = run_drift_report(reference, current, None, column_drift_threshold={"n_words": 0.0})
    assert result.drifted_columns == ("n_words",)
    assert result.per_column["n_words"]["threshold"] == 0.0
    with pytest.raises(SchemaError, match="column 'confidence' not in dataframe"):
        run_drift_report(reference, current.drop(columns="confidence"), None)
    with pytest.raises(SchemaError, match="at least one row"):
        run_drift_report(reference, current.iloc[:0], None)
    with pytest.raises(ValueError, match="expected thresholds for columns"):
        run_drift_report(reference, current, None, column_drift_threshold={"nope": 0.1})


@pytest.mark.slow
def test_text_column_drifts_on_new_names(tmp_path: Path) -> None:
    reference = drift_features(_log(200, seed=0), LEXICON)
    current = drift_features(_log(200, seed=8, car=True), LEXICON)
    result = run_drift_report(reference, current, None, include_text=True)
    assert "transcript" in result.per_column
    assert result.per_column["transcript"]["drifted"]


def test_decide_small_window_gives_no_decision() -> None:
    decision = decide(_result(1.0, 50, ("snr_db_estimate",)), 0.5, 300, None, NOW, 60)
    assert not decision.drift and not decision.retrain and decision.window == 50
    assert "below the minimum of 300" in decision.reason


def test_decide_no_drift_below_threshold() -> None:
    decision = decide(_result(0.2, 500, ("confidence",)), 0.5, 300, None, NOW, 60)
    assert not decision.drift and not decision.retrain and decision.reason.startswith("no drift")


def test_decide_cooldown() -> None:
    drifted = _result(0.6, 500, ("snr_db_estimate", "confidence"))
    cooling = decide(drifted, 0.5, 300, NOW - timedelta(minutes=10), NOW, 60)
    assert cooling.drift and not cooling.retrain
    assert "cooling down until 2025-06-01T12:50:00+00:00" in cooling.reason
    after = decide(drifted, 0.5, 300, NOW - timedelta(minutes=61), NOW, 60)
    assert after.drift and after.retrain and after.drift_share == 0.6


def test_decide_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="drift_share_threshold"):
        decide(_result(0.6, 500), 0.0, 300, None, NOW, 60)
    with pytest.raises(ValueError, match="timezone-aware"):
        decide(_result(0.6, 500), 0.5, 300, datetime(2025, 6, 1), NOW, 60)


def test_window_takes_most_recent_rows_by_ts() -> None:
    log = _log(10, seed=2).sample(frac=1.0, random_state=0)
    recent = window(log, 3)
    assert list(recent["request_id"]) == ["r2-7", "r2-8", "r2-9"]
    assert len(window(log, 50)) == 10
    with pytest.raises(ValueError, match="window size"):
        window(log, 0)
