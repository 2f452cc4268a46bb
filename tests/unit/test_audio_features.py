"""Tests for models.audio: the upload decoder, monitoring features, silence trimming, loudness."""

from __future__ import annotations

import dataclasses
import math

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


# -- the one decoder and the one resampler ---------------------------------------------------


def _encoded(audio: np.ndarray, rate: int, fmt: str = "WAV", subtype: str = "PCM_16") -> bytes:
    import io

    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, audio, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


@pytest.mark.parametrize(("rate", "channels"), [(16000, 1), (44100, 2), (8000, 4), (191999, 1)])
def test_decode_audio_gives_16k_mono_of_the_same_duration(rate: int, channels: int) -> None:
    from models.audio import SAMPLE_RATE, decode_audio

    tone = _sine(440.0, -20.0, 0.5)
    t = np.arange(round(0.5 * rate)) / rate
    audio = np.repeat((0.1 * np.sin(2 * np.pi * 440.0 * t))[:, None], channels, axis=1)
    decoded = decode_audio(_encoded(audio.astype(np.float32), rate, subtype="FLOAT"), 12.0)
    assert (decoded.source_rate, decoded.channels) == (rate, channels)
    assert decoded.samples.dtype == np.float32 and decoded.samples.ndim == 1
    assert decoded.samples.size == pytest.approx(tone.size, abs=2)
    assert SAMPLE_RATE == 16000
    # the level survives the conversion (no gain from downmixing identical channels)
    assert _rms_dbfs(decoded.samples[800:-800]) == pytest.approx(_rms_dbfs(audio[:, 0]), abs=0.2)


def _cases() -> dict[str, tuple[bytes, str]]:
    clip = (0.1 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32)
    wav = _encoded(clip, SR)
    nan = clip.copy()
    nan[10] = np.nan
    return {
        "empty": (b"", "empty_upload"),
        "not audio": (b"definitely not audio" * 20, "undecodable_audio"),
        "truncated wav": (wav[: len(wav) // 2], "undecodable_audio"),
        "nan": (_encoded(nan, SR, subtype="FLOAT"), "non_finite_samples"),
        "too long": (_encoded(np.zeros(13 * 8000, np.float32), 8000), "audio_too_long"),
        "too short": (_encoded(clip[:160], SR), "audio_too_short"),
        "rate too low": (_encoded(clip[:3000], 3000), "bad_sample_rate"),
    }


@pytest.mark.parametrize("case", list(_cases()))
def test_decode_audio_names_what_is_wrong(case: str) -> None:
    from models.audio import UnusableAudio, decode_audio

    data, code = _cases()[case]
    with pytest.raises(UnusableAudio) as refused:
        decode_audio(data, max_duration_s=12.0)
    assert refused.value.code == code and str(refused.value)


def test_a_streaming_wav_with_an_unknown_size_is_accepted() -> None:
    from models.audio import UNKNOWN_WAV_SIZE, decode_audio, wav_truncation

    wav = bytearray(_encoded(_sine(440.0, -20.0, 0.5), SR))
    at = wav.index(b"data")
    wav[at + 4 : at + 8] = UNKNOWN_WAV_SIZE.to_bytes(4, "little")  # as sox/ffmpeg leave it
    assert wav_truncation(bytes(wav)) is None
    assert decode_audio(bytes(wav), 12.0).samples.size == SR // 2


@pytest.mark.parametrize(("rate_in", "rate_out"), [(48000, 16000), (8000, 16000), (22050, 16000)])
def test_resample_keeps_duration_and_a_tone_below_nyquist(rate_in: int, rate_out: int) -> None:
    from models.audio import resample

    t = np.arange(rate_in) / rate_in
    tone = (0.5 * np.sin(2 * np.pi * 1000.0 * t)).astype(np.float32)
    out = resample(tone, rate_in, rate_out)
    assert out.dtype == np.float32 and out.size == pytest.approx(rate_out, abs=2)
    spectrum = np.abs(np.fft.rfft(out[rate_out // 10 : -rate_out // 10]))
    peak_hz = np.argmax(spectrum) * rate_out / (2 * (spectrum.size - 1))
    assert peak_hz == pytest.approx(1000.0, abs=5.0)


def test_resample_removes_what_the_new_rate_cannot_hold() -> None:
    from models.audio import resample

    t = np.arange(48000) / 48000
    above_nyquist = (0.5 * np.sin(2 * np.pi * 12000.0 * t)).astype(np.float32)
    out = resample(above_nyquist, 48000, 16000)
    assert _rms_dbfs(out[1600:-1600]) < -60.0  # filtered, not aliased down to 4 kHz


def test_resample_refuses_a_non_positive_rate() -> None:
    from models.audio import resample

    with pytest.raises(ValueError, match="positive"):
        resample(np.zeros(10, np.float32), 0, 16000)
