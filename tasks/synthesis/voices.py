"""The voice catalogue: every English accent x voice variant espeak-ng offers (plus flite's
voices when the binary is on PATH), each with fixed prosody drawn from a seed.

Formant variants are synthesizer "espeak"; variants that switch to the klatt (or klatt-6
"speechPlayer") generator are "espeak-klatt", a different synthesis method that makes a useful
held-out synthesizer.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from tasks.synthesis.espeak import espeak_data_path
from tasks.synthesis.flite import flite_voices

DEFAULT_N_ESPEAK_VOICES = 96
DEFAULT_VOICE_SEED = 0  # the default voice pool is the same for every corpus
# accent files that are not an accent of English read in Latin script
_SKIPPED_ACCENTS = frozenset({"en-shaw"})
# novelty variants (robots, demons) and a duplicate of the default voice
_SKIPPED_VARIANTS = frozenset({"Demonic", "UniRobot", "anikaRobot", "fast", "Mr serious"})
_SKIPPED_VARIANT_PREFIXES = ("robosoft",)


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker: accent x variant x fixed prosody."""

    voice_id: str
    synthesizer: str
    language: str
    variant: str
    pitch: int
    pitch_range: int
    rate: int


@cache
def espeak_accents() -> tuple[str, ...]:
    """English accents present in the espeak data ("en", "en-us", "en-gb-scotland", ...)."""
    lang_dir = espeak_data_path() / "lang"
    found = {
        p.name.lower()
        for p in lang_dir.rglob("en*")
        if p.is_file() and re.fullmatch(r"en(-[a-z0-9]+)*", p.name.lower())
    }
    accents = tuple(sorted(found - _SKIPPED_ACCENTS))
    if not accents:
        raise RuntimeError(f"no English accent files under {lang_dir}")
    return accents


def _variant_synthesizer(path: Path) -> str:
    """'espeak-klatt' if a variant file switches to a klatt generator, else 'espeak'."""
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "klatt" and parts[1].isdigit() and int(parts[1]) > 0:
            return "espeak-klatt"
    return "espeak"


@cache
def espeak_variants() -> tuple[tuple[str, str], ...]:
    """(variant, synthesizer) for every usable variant file in espeak-ng-data/voices/!v."""
    variant_dir = espeak_data_path() / "voices" / "!v"
    variants = []
    for path in sorted(variant_dir.iterdir()):
        name = path.name
        if (
            not path.is_file()
            or not re.fullmatch(r"[A-Za-z0-9_-]+", name)
            or name in _SKIPPED_VARIANTS
            or name.startswith(_SKIPPED_VARIANT_PREFIXES)
        ):
            continue
        variants.append((name, _variant_synthesizer(path)))
    if not variants:
        raise RuntimeError(f"no voice variant files under {variant_dir}")
    return tuple(variants)


def check_voice(voice: Voice) -> None:
    """Raise ValueError unless the installed engines can speak with this voice."""
    if voice.synthesizer in ("espeak", "espeak-klatt"):
        variant_file = espeak_data_path() / "voices" / "!v" / voice.variant
        if voice.language not in espeak_accents() or not variant_file.is_file():
            raise ValueError(
                f"voice {voice.voice_id!r}: expected an accent in {espeak_accents()} and a variant "
                f"file under {variant_file.parent}, got {voice.language!r} + {voice.variant!r}"
            )
    elif voice.synthesizer == "flite":
        if voice.variant not in flite_voices():
            raise ValueError(
                f"voice {voice.voice_id!r}: flite voice {voice.variant!r} is not available "
                f"(available: {flite_voices() or 'none, flite is not on PATH'})"
            )
    else:
        raise ValueError(f"voice {voice.voice_id!r}: unknown synthesizer {voice.synthesizer!r}")


def _prosody_rng(seed: int, voice_id: str) -> np.random.Generator:
    """A generator for one voice's prosody: the same voice_id keeps its prosody for a seed."""
    return np.random.default_rng([seed, zlib.crc32(voice_id.encode("utf-8"))])


def _espeak_voice(seed: int, accent: str, variant: str, synthesizer: str) -> Voice:
    """An espeak voice with prosody drawn for (seed, voice_id)."""
    voice_id = f"espeak/{accent}+{variant}"
    rng = _prosody_rng(seed, voice_id)
    return Voice(
        voice_id=voice_id,
        synthesizer=synthesizer,
        language=accent,
        variant=variant,
        pitch=int(rng.integers(35, 66)),
        pitch_range=int(rng.integers(30, 81)),
        rate=int(rng.integers(140, 201)),
    )


def _flite_voice(seed: int, name: str) -> Voice:
    """A flite voice; flite takes only the speaking rate, so pitch and range stay neutral."""
    voice_id = f"flite/{name}"
    rng = _prosody_rng(seed, voice_id)
    return Voice(
        voice_id, "flite", "en-us", name, pitch=50, pitch_range=50, rate=int(rng.integers(150, 196))
    )


def _espeak_order(seed: int) -> list[tuple[str, str, str]]:
    """All (accent, variant, synthesizer) pairs, ordered so any prefix spreads over both axes."""
    rng = np.random.default_rng([seed, 0])
    variants = [espeak_variants()[i] for i in rng.permutation(len(espeak_variants()))]
    accents = [espeak_accents()[i] for i in rng.permutation(len(espeak_accents()))]
    n_var, n_acc = len(variants), len(accents)
    order = []
    for i in range(n_var * n_acc):
        k, j = divmod(i, n_var)  # j cycles variants; each new round moves every variant's accent
        variant, synthesizer = variants[j]
        order.append((accents[(j + k) % n_acc], variant, synthesizer))
    return order


def list_voices(seed: int, n: int | None = None) -> list[Voice]:
    """Deterministic voice list: n=None gives the default pool (96 espeak voices + any flite)."""
    espeak = [_espeak_voice(seed, a, v, s) for a, v, s in _espeak_order(seed)]
    flite = [_flite_voice(seed, name) for name in flite_voices()]
    default_espeak = min(DEFAULT_N_ESPEAK_VOICES, len(espeak))
    ordered = list(espeak)
    for k, voice in enumerate(flite):  # spread flite voices over the default pool
        ordered.insert(int((k + 0.5) * default_espeak / len(flite)) + k, voice)
    if n is None:
        return ordered[: default_espeak + len(flite)]
    if not isinstance(n, int) or n < 1 or n > len(ordered):
        raise ValueError(f"expected n in 1..{len(ordered)} voices (or None), got {n!r}")
    return ordered[:n]
