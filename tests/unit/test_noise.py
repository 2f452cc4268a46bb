"""Tests for tasks.noise: car-noise synthesis, noise loading and SNR-exact mixing."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from scipy import signal
from scipy.io import wavfile

from tasks.noise import (
    NOISE_TYPES,
    band_energy_share,
    car_noise,
    load_noise_recordings,
    measured_snr_db,
    mix_at_snr,
    noise_from_recording,
    plot_noise_summary,
)

SR = 16000


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def _speech_like(n: int, amplitude: float) -> np.ndarray:
    """Deterministic voiced-speech stand-in: harmonic tone with a syllable-rate envelope."""
    t = np.arange(n) / SR
    tone = sum(np.sin(2 * np.pi * 140.0 * k * t) / k for k in range(1, 6))
    env = 0.6 + 0.4 * np.sin(2 * np.pi * 4.0 * t)
    x = tone * env
    return (amplitude * x / np.max(np.abs(x))).astype(np.float32)


def _orthogonal_noise(speech: np.ndarray, seed: int) -> np.ndarray:
    """Cabin noise with its speech component projected out, so LS recovery of gains is exact."""
    n = car_noise("cabin", speech.size / SR, SR, np.random.default_rng(seed)).astype(np.float64)
    s = speech.astype(np.float64)
    return n - (np.dot(n, s) / np.dot(s, s)) * s


@pytest.mark.parametrize("kind", NOISE_TYPES)
def test_car_noise_is_finite_float32_unit_rms_and_right_length(kind: str) -> None:
    x = car_noise(kind, 0.7503, SR, np.random.default_rng(0))
    assert x.dtype == np.float32
    assert x.shape == (round(0.7503 * SR),)
    assert np.all(np.isfinite(x))
    assert _rms(x) == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("kind", NOISE_TYPES)
def test_car_noise_is_deterministic_per_seed(kind: str) -> None:
    a = car_noise(kind, 0.5, SR, np.random.default_rng(7))
    b = car_noise(kind, 0.5, SR, np.random.default_rng(7))
    c = car_noise(kind, 0.5, SR, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("kind", ["engine", "road", "cabin"])
def test_low_frequency_kinds_have_most_energy_below_500_hz(kind: str, seed: int) -> None:
    x = car_noise(kind, 1.0, SR, np.random.default_rng(seed))
    assert band_energy_share(x, SR, 500.0) > 0.6


@pytest.mark.parametrize("speed_kmh", [30.0, 130.0])
@pytest.mark.parametrize("rpm", [1200.0, 3500.0])
def test_cabin_stays_low_frequency_dominated_at_extremes(speed_kmh: float, rpm: float) -> None:
    x = car_noise("cabin", 1.0, SR, np.random.default_rng(3), speed_kmh=speed_kmh, rpm=rpm)
    assert band_energy_share(x, SR) > 0.6


def test_wind_and_fan_carry_more_high_frequency_energy_than_road() -> None:
    rng = np.random.default_rng(0)
    road = band_energy_share(car_noise("road", 1.0, SR, rng), SR)
    assert band_energy_share(car_noise("wind", 1.0, SR, rng), SR) < road
    assert band_energy_share(car_noise("fan", 1.0, SR, rng), SR) < road


@pytest.mark.parametrize("rpm", [1500.0, 2400.0, 3300.0])
def test_engine_spectrum_peaks_at_firing_frequency(rpm: float) -> None:
    x = car_noise("engine", 2.0, SR, np.random.default_rng(1), rpm=rpm)
    freqs, psd = signal.welch(x, fs=SR, nperseg=8192)
    firing_hz = rpm / 60.0 * 2.0
    assert freqs[np.argmax(psd)] == pytest.approx(firing_hz, rel=0.03, abs=2.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "tractor"}, "kind"),
        ({"duration_s": 0.0}, "duration_s"),
        ({"duration_s": float("nan")}, "duration_s"),
        ({"sample_rate": 16000.0}, "sample_rate"),
        ({"speed_kmh": -5.0}, "speed_kmh"),
        ({"rpm": float("inf")}, "rpm"),
    ],
)
def test_car_noise_rejects_bad_arguments(kwargs: dict, message: str) -> None:
    args = {"kind": "cabin", "duration_s": 0.1, "sample_rate": SR} | kwargs
    with pytest.raises(ValueError, match=message):
        car_noise(rng=np.random.default_rng(0), **args)


@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 5.0, 10.0, 20.0])
def test_mix_at_snr_hits_requested_snr(snr_db: float) -> None:
    speech = _speech_like(SR, amplitude=0.3)
    noise = _orthogonal_noise(speech, seed=int(snr_db) + 10)
    mixture = mix_at_snr(speech, noise, snr_db)
    assert mixture.dtype == np.float32
    assert mixture.shape == speech.shape
    assert np.max(np.abs(mixture)) <= 0.999 + 1e-6
    # Noise is orthogonal to speech, so the LS gain is the exact overall (clip-guard) scale.
    scale = float(np.dot(speech, mixture) / np.dot(speech, speech))
    residual = mixture - scale * speech
    direct = 10 * np.log10(np.mean((scale * speech) ** 2) / np.mean(residual**2))
    assert direct == pytest.approx(snr_db, abs=0.1)
    assert measured_snr_db(speech, mixture) == pytest.approx(snr_db, abs=0.1)
    assert np.corrcoef(residual, noise)[0, 1] > 0.9999


def test_clipping_protection_scales_whole_mixture_and_keeps_snr() -> None:
    speech = _speech_like(SR, amplitude=0.95)
    noise = _orthogonal_noise(speech, seed=5)
    mixture = mix_at_snr(speech, noise, 0.0)
    assert np.max(np.abs(mixture)) == pytest.approx(0.999, abs=1e-6)
    scale = float(np.dot(speech, mixture) / np.dot(speech, speech))
    assert scale < 0.9  # the guard really engaged
    assert measured_snr_db(speech, mixture) == pytest.approx(0.0, abs=0.1)


def test_mix_at_snr_loops_short_noise_to_speech_length() -> None:
    speech = _speech_like(SR, amplitude=0.05)
    noise = car_noise("road", 0.3, SR, np.random.default_rng(0))
    mixture = mix_at_snr(speech, noise, 20.0)
    assert mixture.shape == speech.shape
    added = mixture.astype(np.float64) - speech  # no clipping at this level: scale is 1
    period = noise.size
    np.testing.assert_allclose(added[period : 2 * period], added[:period], atol=1e-6)
    snr = 10 * np.log10(np.mean(speech.astype(np.float64) ** 2) / np.mean(added**2))
    assert snr == pytest.approx(20.0, abs=0.1)


@pytest.mark.parametrize(
    ("speech", "noise", "snr_db", "message"),
    [
        (np.zeros(1000), np.ones(1000), 10.0, "speech is silent"),
        (np.full(1000, 0.1), np.zeros(1000), 10.0, "noise is silent"),
        (np.full(1000, 0.1), np.ones(1000), float("nan"), "snr_db"),
        (np.full(1000, 0.1), np.ones(1000), float("inf"), "snr_db"),
        (np.array([]), np.ones(10), 10.0, "speech must not be empty"),
    ],
)
def test_mix_at_snr_rejects_undefined_snr(
    speech: np.ndarray, noise: np.ndarray, snr_db: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        mix_at_snr(speech, noise, snr_db)


def test_load_noise_recordings_downmixes_and_resamples(tmp_path: Path) -> None:
    t = np.arange(44100) / 44100
    left = 0.5 * np.sin(2 * np.pi * 300.0 * t)
    stereo = np.stack([left, np.zeros_like(left)], axis=1)
    wavfile.write(tmp_path / "highway.wav", 44100, (stereo * 32767).astype(np.int16))
    (tmp_path / "notes.txt").write_text("not audio")

    recordings = load_noise_recordings(tmp_path, SR)

    assert set(recordings) == {"highway"}
    audio = recordings["highway"]
    assert audio.dtype == np.float32
    assert audio.shape == (SR,)
    # Mono is the channel mean: a 0.5-amplitude sine in one channel becomes 0.25 amplitude.
    assert _rms(audio[1000:-1000]) == pytest.approx(0.25 / np.sqrt(2), rel=0.02)
    freqs, psd = signal.welch(audio, fs=SR, nperseg=4096)
    assert freqs[np.argmax(psd)] == pytest.approx(300.0, abs=5.0)


def test_load_noise_recordings_names_unreadable_file(tmp_path: Path) -> None:
    (tmp_path / "broken.wav").write_bytes(b"this is not a wav file at all")
    with pytest.raises(ValueError, match=re.escape("broken.wav")):
        load_noise_recordings(tmp_path, SR)


def test_load_noise_recordings_names_empty_file(tmp_path: Path) -> None:
    wavfile.write(tmp_path / "empty.wav", SR, np.zeros(0, dtype=np.int16))
    with pytest.raises(ValueError, match=re.escape("empty.wav")):
        load_noise_recordings(tmp_path, SR)


@pytest.mark.parametrize("duration_s", [0.25, 2.0])
def test_noise_from_recording_length_rms_and_determinism(duration_s: float) -> None:
    recording = car_noise("fan", 0.6, SR, np.random.default_rng(0)) * 0.1
    a = noise_from_recording(recording, duration_s, SR, np.random.default_rng(1))
    b = noise_from_recording(recording, duration_s, SR, np.random.default_rng(1))
    assert a.dtype == np.float32
    assert a.shape == (round(duration_s * SR),)
    assert _rms(a) == pytest.approx(1.0, abs=1e-3)
    np.testing.assert_array_equal(a, b)


def test_noise_from_recording_loop_point_has_no_click() -> None:
    # 0.1013 s of 440 Hz is not a whole number of cycles: plain tiling would jump at the seam.
    n = round(0.1013 * SR)
    recording = np.sin(2 * np.pi * 440.0 * np.arange(n) / SR).astype(np.float32)
    out = noise_from_recording(recording, 1.0, SR, np.random.default_rng(0))
    smooth_step = np.max(np.abs(np.diff(recording))) / _rms(recording)
    assert np.max(np.abs(np.diff(out))) < 1.5 * smooth_step


def test_band_energy_share_separates_low_and_high_tones() -> None:
    t = np.arange(SR) / SR
    assert band_energy_share(np.sin(2 * np.pi * 200 * t), SR) > 0.99
    assert band_energy_share(np.sin(2 * np.pi * 2000 * t), SR) < 0.01


def test_plot_noise_summary_writes_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    examples = {kind: car_noise(kind, 0.5, SR, rng) for kind in NOISE_TYPES}
    out = plot_noise_summary(examples, SR, [0.0, 5.0, 5.0, 10.0, 20.0], tmp_path / "p" / "n.png")
    assert out == tmp_path / "p" / "n.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
