"""Acoustic realism for training copies, as ASR recipes (Kaldi, ESPnet) add it: speed
perturbation, simulated rooms, microphone and small-speaker responses, a telephone line with
its codec, automatic gain control and mild clipping. Pure numpy/scipy, seeded by the caller.

Every function takes mono float32 samples and returns mono float32 samples; all but
`speed_perturb` keep the length.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import signal

from data_contracts.scoping import AugmentationPolicy
from models.audio import resample

TELEPHONE_RATE = 8000
CODECS: tuple[str, ...] = ("mulaw", "gsm")
DEVICES: tuple[str, ...] = ("phone-mic", "small-speaker", "headset")
_EPS = 1e-12


def _f32(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)) + _EPS))


def speed_perturb(audio: np.ndarray, factor: float, sample_rate: int) -> np.ndarray:
    """Faster (factor > 1) or slower speech, pitch moving with it (sox `speed`, Kaldi's 3-way
    perturbation): the clip is read as if sampled at rate*factor. Length: len/factor."""
    if not 0.5 <= factor <= 2.0:
        raise ValueError(f"speed factor must be in [0.5, 2], got {factor}")
    if factor == 1.0:
        return _f32(audio)
    return _f32(resample(audio, round(sample_rate * factor), sample_rate))


def room_impulse_response(rt60: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A simulated room: the direct path, a few early reflections (2-25 ms) and a diffuse tail
    of noise decaying 60 dB over `rt60` seconds, darker as it decays (air and walls absorb
    high frequencies). Normalised to a unit direct path."""
    if not 0.01 <= rt60 <= 2.0:
        raise ValueError(f"reverb time rt60 must be in [0.01, 2] s, got {rt60}")
    n = max(int(min(1.2 * rt60, 1.0) * sample_rate), 8)
    t = np.arange(n) / sample_rate
    tail = rng.standard_normal(n) * np.exp(-6.908 * t / rt60)  # -60 dB at rt60
    dark = signal.sosfilt(signal.butter(1, 3000, fs=sample_rate, output="sos"), tail)
    mix = np.clip(t / rt60, 0, 1)
    tail = (1 - mix) * tail + mix * dark
    onset = int(0.002 * sample_rate)
    tail[:onset] = 0.0
    # direct-to-reverberant ratio from about +8 dB (small room, close) to -2 dB (far)
    drr_db = rng.uniform(-2.0, 8.0)
    tail *= 10 ** (-drr_db / 20) / (np.sqrt(np.sum(tail**2)) + _EPS)
    rir = tail
    rir[0] = 1.0
    for _ in range(int(rng.integers(3, 7))):
        at = int(rng.uniform(0.002, 0.025) * sample_rate)
        if at < n:
            rir[at] += rng.uniform(-0.6, 0.6)
    return _f32(rir)


def reverberate(audio: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """The clip spoken in the room of `rir`, same length and RMS as the dry clip."""
    if audio.size == 0:
        return _f32(audio)
    wet = signal.fftconvolve(audio, rir)[: audio.size]
    return _f32(wet * (_rms(audio) / _rms(wet)))


def _peaking(x: np.ndarray, hz: float, gain_db: float, q: float, sr: int) -> np.ndarray:
    """An RBJ peaking-EQ biquad."""
    a = 10 ** (gain_db / 40)
    w = 2 * np.pi * hz / sr
    alpha = np.sin(w) / (2 * q)
    b = [1 + alpha * a, -2 * np.cos(w), 1 - alpha * a]
    den = [1 + alpha / a, -2 * np.cos(w), 1 - alpha / a]
    return signal.lfilter(b, den, x)


def device_response(audio: np.ndarray, device: str, sample_rate: int) -> np.ndarray:
    """The clip as a device hears or plays it: a phone's microphone (thin lows, a presence
    peak), a small loudspeaker (no bass, a boxy resonance, dull highs) or a headset."""
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; known: {list(DEVICES)}")
    nyq = sample_rate / 2
    x = np.asarray(audio, dtype=np.float64)
    if device == "phone-mic":
        x = signal.sosfilt(signal.butter(2, 200, "highpass", fs=sample_rate, output="sos"), x)
        x = _peaking(x, 3000, 5.0, 1.2, sample_rate)
        x = signal.sosfilt(signal.butter(4, min(7000, nyq * 0.95), fs=sample_rate, output="sos"), x)
    elif device == "small-speaker":
        x = signal.sosfilt(signal.butter(3, 450, "highpass", fs=sample_rate, output="sos"), x)
        x = _peaking(x, 1000, 6.0, 2.0, sample_rate)
        x = signal.sosfilt(signal.butter(4, min(5000, nyq * 0.95), fs=sample_rate, output="sos"), x)
    else:
        x = signal.sosfilt(
            signal.butter(
                2, [100, min(7500, nyq * 0.95)], "bandpass", fs=sample_rate, output="sos"
            ),
            x,
        )
    return _f32(x * (_rms(audio) / _rms(x)))


def mu_law(audio: np.ndarray, bits: int = 8) -> np.ndarray:
    """G.711-style mu-law companding, quantised to `bits`, and back."""
    mu = 255.0
    x = np.clip(audio, -1.0, 1.0)
    coded = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    levels = 2 ** (bits - 1) - 1
    coded = np.round(coded * levels) / levels
    return _f32(np.sign(coded) * np.expm1(np.abs(coded) * np.log1p(mu)) / mu)


def gsm_like(audio: np.ndarray, sample_rate: int = TELEPHONE_RATE) -> np.ndarray:
    """A GSM-like lossy speech codec: 20 ms frames, an order-8 LPC envelope (as GSM's
    RPE-LTP) and a residual kept at about 3 bits a sample with a per-frame gain."""
    import librosa

    frame = int(0.02 * sample_rate)
    x = np.asarray(audio, dtype=np.float64)
    out = np.zeros_like(x)
    for start in range(0, x.size, frame):
        seg = x[start : start + frame]
        if seg.size < 10 or _rms(seg) < 1e-5:
            out[start : start + seg.size] = seg * 0.5
            continue
        a = librosa.lpc(
            seg + 1e-6 * np.random.default_rng(start).standard_normal(seg.size), order=8
        )
        if not np.all(np.isfinite(a)):
            out[start : start + seg.size] = seg
            continue
        residual = signal.lfilter(a, [1.0], seg)
        gain = np.max(np.abs(residual)) + _EPS
        q = np.round(residual / gain * 3.5) / 3.5 * gain  # 8 levels
        out[start : start + seg.size] = signal.lfilter([1.0], a, q)
    peak = np.max(np.abs(out)) if out.size else 0.0
    if peak > 1.0:
        out /= peak
    return _f32(out)


def telephone_channel(audio: np.ndarray, sample_rate: int, codec: str) -> np.ndarray:
    """A telephone call: down to 8 kHz, the 300-3400 Hz voice band, the codec, and back at
    `sample_rate`."""
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}; known: {list(CODECS)}")
    narrow = resample(audio, sample_rate, TELEPHONE_RATE).astype(np.float64)
    band = signal.butter(4, [300, 3400], "bandpass", fs=TELEPHONE_RATE, output="sos")
    narrow = np.clip(signal.sosfilt(band, narrow), -1.0, 1.0)
    coded = mu_law(narrow) if codec == "mulaw" else gsm_like(narrow)
    return _f32(resample(coded, TELEPHONE_RATE, sample_rate)[: len(audio)])


def agc_and_clip(
    audio: np.ndarray, sample_rate: int, gain_db: float, clip_fraction: float
) -> np.ndarray:
    """A phone's automatic gain control (a slow level follower pulling toward -20 dBFS,
    within +-12 dB), then `gain_db` more and hard clipping at the level that clips about
    `clip_fraction` of the samples (0: none)."""
    if not 0.0 <= clip_fraction < 0.2:
        raise ValueError(f"clip_fraction must be in [0, 0.2), got {clip_fraction}")
    x = np.asarray(audio, dtype=np.float64)
    if x.size == 0:
        return _f32(x)
    win = max(int(0.15 * sample_rate), 1)
    power = signal.fftconvolve(x**2, np.ones(win) / win, mode="same")
    level_db = 10 * np.log10(np.maximum(power, 1e-10))
    gain = np.clip(-20.0 - level_db, -12.0, 12.0)
    gain = signal.sosfiltfilt(signal.butter(1, 2.0, fs=sample_rate, output="sos"), gain)
    x = x * 10 ** ((gain + gain_db) / 20)
    if clip_fraction > 0:
        level = float(np.quantile(np.abs(x), 1.0 - clip_fraction))
        x = np.clip(x, -level, level)
    peak = float(np.max(np.abs(x)))
    if peak > 0.999:
        x *= 0.999 / peak
    return _f32(x)


# -- a per-copy chain: planned from the policy (pure, seeded), applied by the mixer ----------

PLAIN_CHAIN: dict[str, Any] = {
    "speed": 1.0,
    "rt60": 0.0,
    "device": "",
    "agc": False,
    "gain_db": 0.0,
    "clip_fraction": 0.0,
    "codec": "",
    "chain_seed": 0,
}


def plan_chain(policy: AugmentationPolicy, rng: np.random.Generator, line: bool) -> dict[str, Any]:
    """The acoustic chain of one training copy; `line`: a telephone copy (a codec, no device
    or AGC step), else a noisy one."""
    chain = dict(PLAIN_CHAIN)
    chain["speed"] = float(policy.speed_factors[int(rng.integers(len(policy.speed_factors)))])
    if rng.random() < policy.reverb_share:
        chain["rt60"] = round(float(rng.uniform(policy.rt60_min, policy.rt60_max)), 3)
    if line:
        chain["codec"] = policy.codecs[int(rng.integers(len(policy.codecs)))]
    else:
        if rng.random() < policy.device_share:
            chain["device"] = policy.devices[int(rng.integers(len(policy.devices)))]
        if rng.random() < policy.level_share:
            chain["agc"] = True
            chain["gain_db"] = round(float(rng.uniform(-6.0, 9.0)), 1)
            chain["clip_fraction"] = round(float(rng.uniform(0.0, policy.clip_fraction_max)), 4)
    chain["chain_seed"] = int(rng.integers(2**31))
    return chain


def describe_chain(chain: dict[str, Any]) -> str:
    """The chain as the augmented manifest records it, e.g. "speed=1.1 rt60=0.31 codec=gsm"
    ("none" for a plain copy)."""
    parts = []
    if chain["speed"] != 1.0:
        parts.append(f"speed={chain['speed']:g}")
    if chain["rt60"]:
        parts.append(f"rt60={chain['rt60']:g}")
    if chain["device"]:
        parts.append(f"device={chain['device']}")
    if chain["agc"]:
        parts.append(f"agc gain={chain['gain_db']:+g}dB clip={chain['clip_fraction']:g}")
    if chain["codec"]:
        parts.append(f"codec={chain['codec']}")
    return " ".join(parts) or "none"


def apply_chain(
    speech: np.ndarray,
    sample_rate: int,
    chain: dict[str, Any],
    add_noise: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """Speed, room, then the noise (`add_noise`, the cabin is not in the room's echo), the
    device, the level and clipping, and the telephone line last, as a call would."""
    rng = np.random.default_rng(int(chain["chain_seed"]))
    x = speed_perturb(speech, float(chain["speed"]), sample_rate)
    if chain["rt60"]:
        x = reverberate(x, room_impulse_response(float(chain["rt60"]), sample_rate, rng))
    if add_noise is not None:
        x = add_noise(x)
    if chain["device"]:
        x = device_response(x, str(chain["device"]), sample_rate)
    if chain["agc"]:
        x = agc_and_clip(x, sample_rate, float(chain["gain_db"]), float(chain["clip_fraction"]))
    if chain["codec"]:
        x = telephone_channel(x, sample_rate, str(chain["codec"]))
    return _f32(np.clip(x, -1.0, 1.0))
