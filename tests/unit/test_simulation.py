"""The traffic simulator's clips: decodable 16 kHz WAV with normalised references."""

from __future__ import annotations

import io
import re

import soundfile as sf

from models.text import TRANSCRIPT_PATTERN
from tasks.simulation import SCENARIOS, make_clips
from tasks.synthesis import list_voices


def test_scenarios_shape_the_traffic() -> None:
    voices = list_voices(seed=13)[:3]
    car = make_clips(SCENARIOS["in-car"], 6, voices, seed=1)
    new = make_clips(SCENARIOS["new-names"], 6, voices, seed=1)
    assert all(c.condition == "car" for c in car)
    assert all(c.era == "new" for c in new)
    for clip in car + new:
        audio, sr = sf.read(io.BytesIO(clip.wav_bytes))
        assert sr == 16000 and audio.ndim == 1 and len(audio) > 1600
        assert re.match(TRANSCRIPT_PATTERN, clip.reference)
