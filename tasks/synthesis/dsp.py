"""From text to a clip that sounds recorded: speak, resample, trim, level, silences, noise floor."""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

from models.audio import resample
from tasks.synthesis.espeak import espeak_synth
from tasks.synthesis.festival import festival_synth
from tasks.synthesis.flite import flite_synth
from tasks.synthesis.kokoro import kokoro_synth
from tasks.synthesis.voices import Voice

# realism of a rendered utterance
LEADING_SILENCE_S = (0.05, 0.6)
TRAILING_SILENCE_S = (0.05, 0.6)
SPEECH_RMS_DBFS = (-30.0, -12.0)
NOISE_BELOW_SPEECH_DB = (45.0, 65.0)
# 16-bit audio holds nothing below about -90 dBFS: keep the floor audible in the written file
MIN_NOISE_DBFS = -84.0
MAX_PEAK = 0.98
_PINK_B = (0.049922035, -0.095993537, 0.050612699, -0.004408786)
_PINK_A = (1.0, -2.494956002, 2.017265875, -0.522189400)


def synthesize(
    text: str, voice: Voice, sample_rate: int, spoken: tuple[np.ndarray, int] | None = None
) -> np.ndarray:
    """Speak `text` with `voice`: float32 mono samples in [-1, 1] at `sample_rate`.

    `spoken` is the engine's output when it was rendered beforehand (festival and Kokoro, in
    batches).
    espeak audio varies slightly with what this process spoke before (see tasks.synthesis.espeak).
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"expected non-empty text to speak, got {text!r}")
    if not isinstance(sample_rate, int) or sample_rate < 8000:
        raise ValueError(f"expected an integer sample rate >= 8000 Hz, got {sample_rate!r}")
    if spoken is not None:
        audio, rate = spoken
    elif voice.synthesizer in ("espeak", "espeak-klatt"):
        pcm, rate = espeak_synth(text, voice)
        audio = pcm.astype(np.float32) / 32768.0
    elif voice.synthesizer == "flite":
        audio, rate = flite_synth(text, voice)
    elif voice.synthesizer in ("festival", "festival-hts"):
        audio, rate = festival_synth(text, voice)
    elif voice.synthesizer == "kokoro":
        audio, rate = kokoro_synth(text, voice)
    else:
        raise ValueError(f"unknown synthesizer {voice.synthesizer!r} of voice {voice.voice_id!r}")
    if audio.size == 0 or not np.any(audio):
        raise ValueError(f"voice {voice.voice_id!r} produced no audio for {text!r}")
    out = resample(audio, rate, sample_rate)
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def _trim(audio: np.ndarray, sample_rate: int, rel_db: float = -50.0) -> np.ndarray:
    """Cut the synthesizer's own leading/trailing silence, keeping a 20 ms margin."""
    threshold = float(np.max(np.abs(audio))) * 10 ** (rel_db / 20)
    loud = np.flatnonzero(np.abs(audio) > threshold)
    if loud.size == 0:
        return audio[:0]
    margin = int(0.02 * sample_rate)
    return audio[max(0, loud[0] - margin) : loud[-1] + margin + 1]


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Pink-ish (1/f) noise of unit RMS."""
    warmup = 2048
    white = rng.standard_normal(n + warmup)
    pink = lfilter(_PINK_B, _PINK_A, white)[warmup:]
    rms = float(np.sqrt(np.mean(pink**2))) if n else 1.0
    return pink / (rms or 1.0)


def render_utterance(
    text: str,
    voice: Voice,
    sample_rate: int,
    rng: np.random.Generator,
    spoken: tuple[np.ndarray, int] | None = None,
) -> np.ndarray:
    """Speak text like a recorded query: random silences, gain and a faint pink noise floor."""
    speech = _trim(synthesize(text, voice, sample_rate, spoken).astype(np.float64), sample_rate)
    if speech.size == 0:
        raise ValueError(f"voice {voice.voice_id!r} produced only silence for {text!r}")
    target_dbfs = rng.uniform(*SPEECH_RMS_DBFS)
    speech *= 10 ** (target_dbfs / 20) / float(np.sqrt(np.mean(speech**2)))
    lead = int(rng.uniform(*LEADING_SILENCE_S) * sample_rate)
    trail = int(rng.uniform(*TRAILING_SILENCE_S) * sample_rate)
    audio = np.concatenate([np.zeros(lead), speech, np.zeros(trail)])
    noise_dbfs = max(target_dbfs - rng.uniform(*NOISE_BELOW_SPEECH_DB), MIN_NOISE_DBFS)
    audio += pink_noise(audio.size, rng) * 10 ** (noise_dbfs / 20)
    peak = float(np.max(np.abs(audio)))
    if peak > MAX_PEAK:
        audio *= MAX_PEAK / peak
    return audio.astype(np.float32)
