"""Tests for models.audio: the upload decoder, monitoring features, silence trimming, loudness."""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import pytest

from models.audio import (
    AudioFeatures,
    compute_audio_features,
    normalise_loudness,
    trim_silence,
)

SR = 16000


def _sine(freq_hz: float, rms_dbfs: float, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(round(seconds * SR)) / SR
    amplitude = math.sqrt(2.0) * 10.0 ** (rms_dbfs / 20.0)
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def _rms_dbfs(x: np.ndarray) -> float:
    return 20.0 * math.log10(math.sqrt(float(np.mean(np.square(x, dtype=np.float64)))))


@pytest.mark.parametrize("freq_hz", [250.0, 1000.0, 3000.0])
def test_sine_level_and_spectral_position(freq_hz: float) -> None:
    feats = compute_audio_features(_sine(freq_hz, -20.0), SR)
    assert feats.duration_s == pytest.approx(1.0)
    assert feats.rms_dbfs == pytest.approx(-20.0, abs=0.5)
    assert feats.peak_dbfs == pytest.approx(-20.0 + 20 * math.log10(math.sqrt(2)), abs=0.1)
    assert feats.spectral_centroid_hz == pytest.approx(freq_hz, rel=0.05)
    assert feats.spectral_rolloff_hz == pytest.approx(freq_hz, rel=0.1, abs=40.0)
    assert feats.clipping_share == 0.0
    assert feats.silence_share == 0.0
    assert feats.low_band_share == pytest.approx(1.0 if freq_hz < 500 else 0.0, abs=0.01)


@pytest.mark.parametrize("n", [1, 7, 320, 3 * SR])
def test_silence_gives_finite_values(n: int) -> None:
    feats = compute_audio_features(np.zeros(n, dtype=np.float32), SR)
    values = feats.as_dict()
    assert all(math.isfinite(v) for v in values.values())
    assert feats.rms_dbfs == -120.0
    assert feats.peak_dbfs == -120.0
    assert feats.silence_share == 1.0


def test_as_dict_has_every_field_as_float() -> None:
    values = compute_audio_features(_sine(440.0, -30.0), SR).as_dict()
    assert list(values) == [f.name for f in dataclasses.fields(AudioFeatures)]
    assert all(type(v) is float for v in values.values())


def test_clipping_share_counts_full_scale_samples() -> None:
    x = np.clip(4.0 * _sine(100.0, -3.0), -1.0, 1.0)
    feats = compute_audio_features(x, SR)
    assert feats.clipping_share == pytest.approx(float(np.mean(np.abs(x) >= 0.999)))
    assert feats.clipping_share > 0.5


def test_silence_share_and_snr_on_speech_with_pause() -> None:
    rng = np.random.default_rng(0)
    floor = 10 ** (-70 / 20) * rng.standard_normal(2 * SR)  # -70 dBFS noise floor throughout
    x = floor.copy()
    x[SR:] += _sine(300.0, -20.0)  # tone in the second half only
    feats = compute_audio_features(x.astype(np.float32), SR)
    assert feats.silence_share == pytest.approx(0.5, abs=0.02)
    assert feats.snr_db_estimate == pytest.approx(50.0, abs=1.5)


def test_snr_estimate_is_clipped_to_range() -> None:
    x = np.zeros(SR, dtype=np.float32)
    x[SR // 2 :] = _sine(500.0, -10.0, 0.5)  # exact digital silence in the first half
    assert compute_audio_features(x, SR).snr_db_estimate == 60.0


@pytest.mark.parametrize(
    ("audio", "message"),
    [
        (np.array([], dtype=np.float32), "empty"),
        (np.zeros((2, 100), dtype=np.float32), "1-D"),
        (np.array([0.1, np.nan, 0.2]), "NaN or inf"),
        (np.array([0.1, np.inf]), "NaN or inf"),
    ],
)
def test_compute_audio_features_rejects_bad_input(audio: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compute_audio_features(audio, SR)


def test_compute_audio_features_is_fast_on_a_3s_clip() -> None:
    x = (0.1 * np.random.default_rng(0).standard_normal(3 * SR)).astype(np.float32)
    compute_audio_features(x, SR)  # warm-up
    best = min(_timed(compute_audio_features, x) for _ in range(15))
    assert best < 0.005


def _timed(fn, x: np.ndarray) -> float:
    start = time.perf_counter()
    fn(x, SR)
    return time.perf_counter() - start


@pytest.mark.parametrize("keep_ms", [0.0, 50.0, 200.0])
def test_trim_silence_removes_leading_second_but_keeps_margin(keep_ms: float) -> None:
    tone = _sine(440.0, -20.0, 0.5)
    x = np.concatenate([np.zeros(SR), tone, np.zeros(SR // 4)]).astype(np.float32)
    out = trim_silence(x, SR, top_db=40.0, keep_ms=keep_ms)
    margin = round(keep_ms / 1000 * SR)
    assert len(out) == pytest.approx(tone.size + 2 * margin, abs=SR // 100)
    np.testing.assert_array_equal(out[:margin], 0.0)
    # The whole tone survives the trim, right after the kept margin.
    np.testing.assert_array_equal(out[margin : margin + tone.size], tone)


def test_trim_silence_all_silent_returns_input_unchanged() -> None:
    x = np.zeros(SR, dtype=np.float32)
    np.testing.assert_array_equal(trim_silence(x, SR, top_db=40.0, keep_ms=10.0), x)


def test_trim_silence_never_empties_short_non_silent_input() -> None:
    x = np.zeros(SR, dtype=np.float32)
    x[SR // 2] = 0.01
    out = trim_silence(x, SR, top_db=60.0, keep_ms=0.0)
    assert out.size > 0
    assert np.any(out != 0)


@pytest.mark.parametrize("target_dbfs", [-40.0, -23.0, -20.0, -6.0])
def test_normalise_loudness_hits_target(target_dbfs: float) -> None:
    out = normalise_loudness(_sine(330.0, -37.0), target_dbfs)
    assert out.dtype == np.float32
    assert _rms_dbfs(out) == pytest.approx(target_dbfs, abs=0.1)


def test_normalise_loudness_peak_limits_by_scaling() -> None:
    x = _sine(330.0, -30.0)
    out = normalise_loudness(x, -1.0)
    assert np.max(np.abs(out)) == pytest.approx(0.999, abs=1e-6)
    np.testing.assert_allclose(out / np.max(np.abs(out)), x / np.max(np.abs(x)), atol=1e-6)


def test_normalise_loudness_leaves_silence_unchanged() -> None:
    x = np.zeros(100, dtype=np.float32)
    np.testing.assert_array_equal(normalise_loudness(x, -20.0), x)
