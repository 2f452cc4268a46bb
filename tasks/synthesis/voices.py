"""The voice catalogue: every English accent x voice variant espeak-ng offers, plus the voices
of Debian's flite and festival and Kokoro's neural voices, each with fixed prosody from a seed.

The catalogue is a function of the seed and the engines asked for, never of what is installed:
rendering checks that the engines are there (`check_voice`) and names the one that is missing.

Formant variants are synthesizer "espeak"; variants that switch to the klatt (or klatt-6
"speechPlayer") generator are "espeak-klatt", a different synthesis method that makes a useful
held-out synthesizer.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from tasks.synthesis.espeak import espeak_data_path
from tasks.synthesis.festival import FESTIVAL_VOICES, festival_voices
from tasks.synthesis.flite import FLITE_VOICES, flite_voices
from tasks.synthesis.kokoro import INSTALL_HINT as KOKORO_HINT
from tasks.synthesis.kokoro import KOKORO_VOICES, kokoro_voices

# the engines a catalogue may use, in catalogue order; espeak-ng comes with the Python lock
ENGINES: tuple[str, ...] = ("espeak", "flite", "festival", "kokoro")
SYNTHESIZERS: dict[str, tuple[str, ...]] = {
    "espeak": ("espeak", "espeak-klatt"),
    "flite": ("flite",),
    "festival": ("festival", "festival-hts"),
    "kokoro": ("kokoro",),
}
# the voices of the other engines: fixed, so a catalogue never depends on what is installed
ENGINE_VOICES: dict[str, tuple[str, ...]] = {
    "flite": FLITE_VOICES,
    "festival": tuple(FESTIVAL_VOICES),
    "kokoro": KOKORO_VOICES,
}
INSTALL_HINT = {
    "espeak": "pip: espeakng-loader",
    "flite": "apt: flite",
    "festival": "apt: festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts",
    "kokoro": KOKORO_HINT,
}
DEFAULT_N_ESPEAK_VOICES = 96
# engines whose voices are spread over a pool after the Debian ones (added later: a catalogue
# without them keeps the order it had), never among its first ESPEAK_FIRST voices
LATE_ENGINES: tuple[str, ...] = ("kokoro",)
ESPEAK_FIRST = 10
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


def engine_of(synthesizer: str) -> str:
    """The engine ("espeak", "flite", "festival", "kokoro") a synthesizer label belongs to."""
    for engine, labels in SYNTHESIZERS.items():
        if synthesizer in labels:
            return engine
    raise ValueError(f"unknown synthesizer {synthesizer!r}; expected one of {SYNTHESIZERS}")


def installed_voices(engine: str) -> tuple[str, ...]:
    """The voice names of one engine that this machine can speak with."""
    if engine == "espeak":
        return tuple(v for v, _ in espeak_variants())
    if engine == "flite":
        return flite_voices()
    if engine == "festival":
        return festival_voices()
    if engine == "kokoro":
        return kokoro_voices()
    raise ValueError(f"unknown engine {engine!r}; expected one of {ENGINES}")


def missing_engines(engines: Sequence[str]) -> dict[str, str]:
    """Engine -> what is missing, for each of `engines` this machine cannot fully speak with."""
    missing = {}
    for engine in engines:
        wanted = ENGINE_VOICES.get(engine, ())
        absent = [v for v in wanted if v not in installed_voices(engine)]
        if absent:
            missing[engine] = f"{engine} (voices {', '.join(absent)}; {INSTALL_HINT[engine]})"
    return missing


def check_voice(voice: Voice) -> None:
    """Raise ValueError unless the installed engines can speak with this voice."""
    engine = engine_of(voice.synthesizer)
    if engine == "espeak":
        variant_file = espeak_data_path() / "voices" / "!v" / voice.variant
        if voice.language not in espeak_accents() or not variant_file.is_file():
            raise ValueError(
                f"voice {voice.voice_id!r}: expected an accent in {espeak_accents()} and a variant "
                f"file under {variant_file.parent}, got {voice.language!r} + {voice.variant!r}"
            )
    elif voice.variant not in installed_voices(engine):
        raise ValueError(
            f"voice {voice.voice_id!r} needs the {engine} engine with voice {voice.variant!r}, "
            f"which is not installed on this machine ({INSTALL_HINT[engine]}); the corpus's voice "
            "catalogue names it, so it cannot be rendered here"
        )


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


def _other_voice(seed: int, engine: str, name: str) -> Voice:
    """A flite, festival or Kokoro voice: only the rate varies, pitch and range stay neutral."""
    voice_id = f"{engine}/{name}"
    rng = _prosody_rng(seed, voice_id)
    synthesizer = FESTIVAL_VOICES[name][1] if engine == "festival" else engine
    rate = int(rng.integers(150, 196))
    return Voice(voice_id, synthesizer, "en-us", name, pitch=50, pitch_range=50, rate=rate)


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


def _other_order(engines: Sequence[str]) -> list[tuple[str, str]]:
    """(engine, voice) of the non-espeak engines, interleaved so a prefix mixes engines."""
    columns = [
        [(e, v) for v in ENGINE_VOICES[e]]
        for e in ENGINES
        if e != "espeak" and e not in LATE_ENGINES and e in engines
    ]
    out = []
    for row in range(max((len(c) for c in columns), default=0)):
        out += [c[row] for c in columns if row < len(c)]
    return out


def _check_engines(engines: Sequence[str]) -> tuple[str, ...]:
    """The engines in catalogue order, or ValueError naming an unknown one."""
    unknown = sorted(set(engines) - set(ENGINES))
    if unknown or "espeak" not in engines:
        raise ValueError(f"expected engines among {ENGINES} including 'espeak', got {engines!r}")
    return tuple(e for e in ENGINES if e in engines)


def list_voices(seed: int, n: int | None = None, engines: Sequence[str] = ENGINES) -> list[Voice]:
    """The voice catalogue of `engines`, deterministic whatever is installed.

    n=None gives the default pool (96 espeak voices + every flite/festival/kokoro voice of
    `engines`), the other voices spread over it; the first 10 voices are always espeak ones.
    """
    engines = _check_engines(engines)
    espeak = [_espeak_voice(seed, a, v, s) for a, v, s in _espeak_order(seed)]
    others = [_other_voice(seed, e, name) for e, name in _other_order(engines)]
    default_espeak = min(DEFAULT_N_ESPEAK_VOICES, len(espeak))
    ordered = list(espeak)
    for k, voice in enumerate(others):
        ordered.insert(int((k + 1) * default_espeak / (len(others) + 1)) + k, voice)
    late = [
        _other_voice(seed, e, v) for e in LATE_ENGINES if e in engines for v in ENGINE_VOICES[e]
    ]
    pool = default_espeak + len(others)
    for k, voice in enumerate(late):
        spread = int((k + 1) * (pool - ESPEAK_FIRST) / (len(late) + 1))
        ordered.insert(ESPEAK_FIRST + spread + k, voice)
    if n is None:
        return ordered[: pool + len(late)]
    if not isinstance(n, int) or n < 1 or n > len(ordered):
        raise ValueError(f"expected n in 1..{len(ordered)} voices (or None), got {n!r}")
    return ordered[:n]


def voice_from_id(voice_id: str, seed: int) -> Voice:
    """The catalogue voice of an id ("espeak/en-us+m3", "flite/slt", "kokoro/jf_alpha", ...).

    A dataset version names its voices; this gives them back with their prosody for the seed,
    whatever the engines installed now (rendering checks those).
    """
    engine, _, name = voice_id.partition("/")
    if engine == "espeak" and "+" in name:
        accent, _, variant = name.partition("+")
        synthesizer = dict(espeak_variants()).get(variant)
        if synthesizer is not None:
            return _espeak_voice(seed, accent, variant, synthesizer)
    elif engine in ENGINE_VOICES and name in ENGINE_VOICES[engine]:
        return _other_voice(seed, engine, name)
    raise ValueError(f"{voice_id!r} is not a voice of the catalogue (engines {ENGINES})")


def is_catalogue_voice(voice_id: str) -> bool:
    """True if voice_id names a catalogue voice (not, say, a production speaker)."""
    try:
        voice_from_id(voice_id, DEFAULT_VOICE_SEED)
    except ValueError:
        return False
    return True


def shuffled_rounds(n: int, pool: Sequence[int], rng: np.random.Generator) -> list[int]:
    """n picks from pool in shuffled rounds, so every member gets its share."""
    order: list[int] = []
    while len(order) < n:
        order.extend(int(pool[i]) for i in rng.permutation(len(pool)))
    return order[:n]


def assign_voices(
    n: int, voices: Sequence[Voice], seed: int, engine_utterances: Mapping[str, int]
) -> tuple[list[int], dict[str, int]]:
    """Voice index per utterance, and the utterance count of each capped engine present.

    Without a capped engine among `voices` (engine_utterances names the slow ones, Kokoro),
    every voice gets its share in shuffled rounds, as always. With one, its voices speak
    min(cap, their fair share) utterances at random places and the other voices the rest.
    """
    engines = [engine_of(v.synthesizer) for v in voices]
    capped = {
        e: [i for i, engine in enumerate(engines) if engine == e]
        for e in engine_utterances
        if e in engines
    }
    if not capped:
        return shuffled_rounds(n, range(len(voices)), np.random.default_rng([seed, 1])), {}
    free = [i for i, engine in enumerate(engines) if engine not in capped]
    if not free:
        raise ValueError(f"expected voices beside the capped engines {sorted(capped)}, got none")
    counts = {
        e: min(engine_utterances[e], n * len(idx) // len(voices)) for e, idx in capped.items()
    }
    rng = np.random.default_rng([seed, 4])
    places = [int(p) for p in rng.permutation(n)]
    assignment = [-1] * n
    start = 0
    for engine, pool in capped.items():
        taken = sorted(places[start : start + counts[engine]])
        start += counts[engine]
        for place, voice in zip(taken, shuffled_rounds(len(taken), pool, rng), strict=True):
            assignment[place] = voice
    rest = [p for p in range(n) if assignment[p] < 0]
    for place, voice in zip(rest, shuffled_rounds(len(rest), free, rng), strict=True):
        assignment[place] = voice
    return assignment, counts
