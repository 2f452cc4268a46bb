"""Acoustic realism of training copies: each effect does what its name says, and the plan
draws them at the policy's shares, deterministically, leaving dev/test in-car audio plain."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import signal

from data_contracts.scoping import AugmentationPolicy
from tasks.acoustics import (
    PLAIN_CHAIN,
    agc_and_clip,
    apply_chain,
    describe_chain,
    device_response,
    gsm_like,
    mu_law,
    reverberate,
    room_impulse_response,
    speed_perturb,
    telephone_channel,
)
from tasks.augmentation import noise_menu, plan_augmentation

SR = 16000


def _noise(seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(SR * seconds))).astype(np.float32)


def _band_share(x: np.ndarray, lo: float, hi: float) -> float:
    f, p = signal.welch(x, fs=SR, nperseg=1024)
    return float(p[(f >= lo) & (f < hi)].sum() / p.sum())


def _peak_hz(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / SR)[spectrum.argmax()])


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_perturbation_changes_length_and_pitch_together(factor: float) -> None:
    tone = np.sin(2 * np.pi * 200 * np.arange(SR) / SR).astype(np.float32)
    out = speed_perturb(tone, factor, SR)
    assert abs(len(out) - SR / factor) <= 2
    assert _peak_hz(out) == pytest.approx(200 * factor, abs=3)
    assert np.array_equal(speed_perturb(tone, 1.0, SR), tone)


def test_a_longer_reverb_time_leaves_more_late_energy_and_keeps_length_and_level() -> None:
    rng = np.random.default_rng(1)
    short = room_impulse_response(0.1, SR, rng)
    long = room_impulse_response(0.6, SR, rng)

    def late(rir: np.ndarray) -> float:  # energy after 50 ms over the total
        return float(np.sum(rir[int(0.05 * SR) :] ** 2) / np.sum(rir**2))

    assert late(long) > 2 * late(short)
    # energy decays: the last tenth of a 0.6 s response is far below its first tenth
    tenth = len(long) // 10
    assert np.sum(long[-tenth:] ** 2) < 1e-3 * np.sum(long[1:tenth] ** 2)
    dry = _noise()
    wet = reverberate(dry, long)
    assert wet.shape == dry.shape and wet.dtype == np.float32
    assert np.sqrt(np.mean(wet**2)) == pytest.approx(np.sqrt(np.mean(dry**2)), rel=0.01)
    with pytest.raises(ValueError, match="rt60"):
        room_impulse_response(5.0, SR, rng)


def test_the_telephone_line_removes_everything_above_its_band_for_both_codecs() -> None:
    x = _noise(1.0)
    for codec in ("mulaw", "gsm"):
        line = telephone_channel(x, SR, codec)
        assert line.shape == x.shape
        assert _band_share(line, 4200, 8000) < 0.01
        assert _band_share(line, 0, 250) < 0.05
    assert _band_share(x, 4200, 8000) > 0.4
    with pytest.raises(ValueError, match="unknown codec 'amr'"):
        telephone_channel(x, SR, "amr")


def test_codecs_are_lossy_but_keep_the_signal() -> None:
    t = np.arange(8000) / 8000
    voiced = (0.3 * signal.sawtooth(2 * np.pi * 120 * t)).astype(np.float32)
    coded = mu_law(voiced)
    assert len(np.unique(coded)) <= 255
    assert 0 < np.max(np.abs(coded - voiced)) < 0.05
    gsm = gsm_like(voiced)
    assert not np.allclose(gsm, voiced, atol=1e-3)
    assert np.corrcoef(gsm, voiced)[0, 1] > 0.5


def test_a_small_speaker_loses_the_bass_and_a_phone_mic_keeps_the_level() -> None:
    x = _noise(2.0)
    speaker = device_response(x, "small-speaker", SR)
    assert _band_share(speaker, 0, 200) < 0.1 * _band_share(x, 0, 200)
    mic = device_response(x, "phone-mic", SR)
    assert np.sqrt(np.mean(mic**2)) == pytest.approx(np.sqrt(np.mean(x**2)), rel=0.01)
    with pytest.raises(ValueError, match="unknown device"):
        device_response(x, "gramophone", SR)


def test_agc_lifts_a_quiet_clip_and_clipping_flattens_about_the_asked_share() -> None:
    quiet = 0.01 * _noise(2.0)
    lifted = agc_and_clip(quiet, SR, gain_db=0.0, clip_fraction=0.0)
    assert np.sqrt(np.mean(lifted**2)) > 3.5 * np.sqrt(np.mean(quiet**2))  # +12 dB at most
    clipped = agc_and_clip(_noise(2.0), SR, gain_db=6.0, clip_fraction=0.02)
    at_peak = np.mean(np.abs(clipped) >= np.max(np.abs(clipped)) * 0.9999)
    assert 0.01 < at_peak < 0.04
    assert np.max(np.abs(clipped)) < 1.0


def test_a_plain_chain_with_no_noise_returns_the_clip() -> None:
    x = _noise(0.5)
    assert np.allclose(apply_chain(x, SR, dict(PLAIN_CHAIN)), x)
    assert describe_chain(PLAIN_CHAIN) == "none"
    chain = {**PLAIN_CHAIN, "speed": 1.1, "rt60": 0.3, "codec": "gsm", "chain_seed": 4}
    assert describe_chain(chain) == "speed=1.1 rt60=0.3 codec=gsm"
    assert len(apply_chain(x, SR, chain)) == pytest.approx(len(x) / 1.1, abs=2)


def _manifest(n: int) -> pd.DataFrame:
    splits = ["train"] * (n // 2) + ["dev"] * (n // 4) + ["test"] * (n - n // 2 - n // 4)
    return pd.DataFrame({"utterance_id": [f"utt-{i:04d}" for i in range(n)], "split": splits})


def test_the_plan_draws_chains_at_the_policy_shares_and_keeps_test_in_car_audio_plain() -> None:
    policy = AugmentationPolicy(augmented_share=0.5, telephone_share=0.2, test_telephone_share=0.3)
    kinds, probs = noise_menu(policy, [])
    manifest = _manifest(800)
    plan = plan_augmentation(manifest, policy, kinds, probs)
    pd.testing.assert_frame_equal(plan, plan_augmentation(manifest, policy, kinds, probs))
    train_ids = set(manifest.loc[manifest["split"] == "train", "utterance_id"])
    is_train = plan["parent_id"].isin(train_ids)
    car, tel = plan["condition"] == "car", plan["condition"] == "telephone"
    assert (car & is_train).sum() / 400 == pytest.approx(0.5, abs=0.08)
    assert (tel & is_train).sum() / 400 == pytest.approx(0.2, abs=0.06)
    assert (tel & ~is_train).sum() / 400 == pytest.approx(0.3, abs=0.07)
    assert (car & ~is_train).sum() == 400  # every held-out clip has its in-car copy
    held_car = plan[car & ~is_train]
    assert (held_car["speed"] == 1.0).all() and (held_car["rt60"] == 0).all()
    assert (held_car["device"] == "").all() and (~held_car["agc"]).all()
    train_car = plan[car & is_train]
    assert set(train_car["speed"]) == {0.9, 1.0, 1.1}
    assert (train_car["rt60"] > 0).mean() == pytest.approx(policy.reverb_share, abs=0.08)
    assert train_car["rt60"][train_car["rt60"] > 0].between(0.05, 0.6).all()
    assert set(plan.loc[tel, "codec"]) == {"mulaw", "gsm"}
    assert plan.loc[tel, "noise_type"].eq("none").all() and plan.loc[tel, "snr_db"].isna().all()
    assert (plan.loc[car, "codec"] == "").all()


def test_a_policy_with_unknown_codecs_or_an_inverted_reverb_range_is_refused() -> None:
    with pytest.raises(ValueError, match="codecs"):
        AugmentationPolicy(codecs=["amr"])
    with pytest.raises(ValueError, match="rt60_min"):
        AugmentationPolicy(rt60_min=0.5, rt60_max=0.2)
    with pytest.raises(ValueError, match="speed_factors"):
        AugmentationPolicy(speed_factors=[3.0])
