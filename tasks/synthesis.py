"""Offline speech synthesis with many voices, and the synthetic voice-search corpus built with it.

Voices come from espeak-ng (through ctypes on the library espeakng-loader ships): an English
accent x a voice variant x fixed prosody. Formant variants are synthesizer "espeak"; variants
that switch to the klatt (or klatt-6 "speechPlayer") generator are "espeak-klatt", a different
synthesis method that makes a useful held-out synthesizer. Debian's `flite` is used when its
binary is on PATH.

espeak keeps some generator state between utterances (pitch-flutter phase), so what one
process synthesises depends slightly on what it synthesised before. `build_corpus` renders
fixed shards of utterances, each in a fresh worker process, so a corpus is byte-identical for a
seed whatever the number of workers.
"""

from __future__ import annotations

import csv
import ctypes
import ctypes.util
import hashlib
import json
import logging
import math
import multiprocessing
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from scipy.signal import lfilter, resample_poly
from tqdm import tqdm

from tasks.corpus import DEFAULT_ERA_WEIGHTS, Query, generate_queries
from tasks.text import normalise_transcript

logger = logging.getLogger(__name__)

CORPUS_SAMPLE_RATE = 16000
DEFAULT_N_ESPEAK_VOICES = 96
DEFAULT_VOICE_SEED = 0  # the default voice pool is the same for every corpus
MANIFEST_COLUMNS = (
    "utterance_id",
    "audio_path",
    "transcript",
    "voice",
    "synthesizer",
    "intent",
    "entities",
    "era",
)
CORPUS_FORMAT_VERSION = 1
# utterances rendered by one fresh process; part of a corpus's identity (see module docstring)
SHARD_SIZE = 24

# realism of a rendered utterance
LEADING_SILENCE_S = (0.05, 0.6)
TRAILING_SILENCE_S = (0.05, 0.6)
SPEECH_RMS_DBFS = (-30.0, -12.0)
NOISE_BELOW_SPEECH_DB = (45.0, 65.0)
# 16-bit audio holds nothing below about -90 dBFS: keep the floor audible in the written file
MIN_NOISE_DBFS = -84.0
MAX_PEAK = 0.98

# espeak-ng API constants (speak_lib.h)
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_ENDPAUSE = 0x1000
_PARAM_RATE, _PARAM_PITCH, _PARAM_RANGE = 1, 3, 4
# accent files that are not an accent of English read in Latin script
_SKIPPED_ACCENTS = frozenset({"en-shaw"})
# novelty variants (robots, demons) and a duplicate of the default voice
_SKIPPED_VARIANTS = frozenset({"Demonic", "UniRobot", "anikaRobot", "fast", "Mr serious"})
_SKIPPED_VARIANT_PREFIXES = ("robosoft",)
_FLITE_VOICES = ("kal", "slt", "awb", "rms", "kal16")
_PINK_B = (0.049922035, -0.095993537, 0.050612699, -0.004408786)
_PINK_A = (1.0, -2.494956002, 2.017265875, -0.522189400)


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


# --- what the installed engines offer --------------------------------------------------------


def espeak_data_path() -> Path:
    """The espeak-ng-data folder shipped by espeakng-loader."""
    import espeakng_loader

    return Path(espeakng_loader.get_data_path())


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


@cache
def flite_voices() -> tuple[str, ...]:
    """The flite voices available, or () when the `flite` binary is not on PATH."""
    binary = shutil.which("flite")
    if binary is None:
        return ()
    try:
        listed = subprocess.run(
            [binary, "-lv"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    names = set(listed.replace(":", " ").split())
    return tuple(v for v in _FLITE_VOICES if v in names)


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


# --- espeak through ctypes ----------------------------------------------------------------------


class _EspeakVoiceInfo(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_char_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class _Espeak:
    """The espeak-ng library, initialised once per process in synchronous mode."""

    def __init__(self) -> None:
        """Load and initialise the library; audio arrives through a callback."""
        import espeakng_loader

        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_GetCurrentVoice.restype = ctypes.POINTER(_EspeakVoiceInfo)
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.restype = ctypes.c_int
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_Info.argtypes = [ctypes.c_void_p]
        lib.espeak_Info.restype = ctypes.c_char_p
        data_path = espeak_data_path()
        rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, str(data_path).encode(), _INITIALIZE_DONT_EXIT
        )
        if rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed (returned {rate}) with data {data_path}")
        self.sample_rate = int(rate)
        self.version = (lib.espeak_Info(None) or b"?").decode()
        self._lib = lib
        self._libc = ctypes.CDLL(ctypes.util.find_library("c"))
        self._chunks: list[np.ndarray] = []
        self._callback = _SynthCallback(self._collect)  # keep a reference: C holds a pointer
        lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav: Any, n_samples: int, _events: Any) -> int:
        """Synthesis callback: copy a chunk of int16 samples; 0 means carry on."""
        if wav and n_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n_samples,)).copy())
        return 0

    def _select(self, voice: Voice) -> None:
        """Select a voice and its prosody; fail rather than fall back to the default voice."""
        name = f"{voice.language}+{voice.variant}"
        status = self._lib.espeak_SetVoiceByName(name.encode())
        current = self._lib.espeak_GetCurrentVoice()
        identifier = (current.contents.identifier or b"").decode() if current else ""
        if status != 0 or not identifier.lower().endswith(f"/{name.lower()}"):
            raise ValueError(
                f"espeak cannot load voice {voice.voice_id!r} (asked for {name!r}, status "
                f"{status}, got {identifier!r}); pick one from list_voices()"
            )
        prosody = (
            (_PARAM_RATE, voice.rate),
            (_PARAM_PITCH, voice.pitch),
            (_PARAM_RANGE, voice.pitch_range),
        )
        for parameter, value in prosody:
            if self._lib.espeak_SetParameter(parameter, int(value), 0) != 0:
                raise ValueError(
                    f"espeak rejected parameter {parameter}={value} of voice {voice.voice_id!r}"
                )

    def synth(self, text: str, voice: Voice) -> np.ndarray:
        """Synthesise text as int16 samples at self.sample_rate."""
        self._select(voice)
        # breath and klatt-6 noise draw from espeak's and libc's generators: fix both per clip
        self._lib.espeak_ng_SetRandSeed(0)
        self._libc.srand(0)
        self._chunks = []
        data = text.encode("utf-8") + b"\0"
        status = self._lib.espeak_Synth(
            data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8 | _ENDPAUSE, None, None
        )
        if status != 0:
            raise RuntimeError(f"espeak_Synth failed with status {status} for {voice.voice_id}")
        self._lib.espeak_Synchronize()
        chunks, self._chunks = self._chunks, []
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)


_ENGINE: _Espeak | None = None
_ENGINE_LOCK = threading.Lock()


def _espeak_synth(text: str, voice: Voice) -> tuple[np.ndarray, int]:
    """Synthesise with this process's espeak engine (created on first use)."""
    global _ENGINE
    with _ENGINE_LOCK:  # espeak is not thread-safe
        if _ENGINE is None:
            _ENGINE = _Espeak()
        return _ENGINE.synth(text, voice), _ENGINE.sample_rate


def espeak_version() -> str:
    """The version string of the loaded espeak-ng library."""
    global _ENGINE
    with _ENGINE_LOCK:
        if _ENGINE is None:
            _ENGINE = _Espeak()
        return _ENGINE.version


def _flite_synth(text: str, voice: Voice) -> tuple[np.ndarray, int]:
    """Synthesise with the flite binary (float samples and their rate)."""
    binary = shutil.which("flite")
    if binary is None:
        raise ValueError(f"voice {voice.voice_id!r} needs the `flite` binary, not found on PATH")
    with tempfile.TemporaryDirectory(prefix="voicecycle-flite-") as tmp:
        out = Path(tmp) / "out.wav"
        cmd = [
            binary,
            "-voice",
            voice.variant,
            "--setf",
            f"duration_stretch={175 / voice.rate:.4f}",
            "-t",
            text,
            "-o",
            str(out),
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0 or not out.exists():
            raise RuntimeError(f"flite failed for {voice.voice_id}: {result.stderr.strip()[:300]}")
        audio, rate = sf.read(out, dtype="float32", always_2d=True)
    return audio.mean(axis=1), int(rate)


def _resample(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Polyphase resampling between integer rates."""
    if rate_in == rate_out:
        return audio
    g = math.gcd(rate_in, rate_out)
    return resample_poly(audio, rate_out // g, rate_in // g)


def synthesize(text: str, voice: Voice, sample_rate: int) -> np.ndarray:
    """Speak `text` with `voice`: float32 mono samples in [-1, 1] at `sample_rate`.

    espeak audio varies slightly with what this process spoke before (see the module docstring).
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"expected non-empty text to speak, got {text!r}")
    if not isinstance(sample_rate, int) or sample_rate < 8000:
        raise ValueError(f"expected an integer sample rate >= 8000 Hz, got {sample_rate!r}")
    if voice.synthesizer in ("espeak", "espeak-klatt"):
        pcm, rate = _espeak_synth(text, voice)
        audio = pcm.astype(np.float32) / 32768.0
    elif voice.synthesizer == "flite":
        audio, rate = _flite_synth(text, voice)
    else:
        raise ValueError(f"unknown synthesizer {voice.synthesizer!r} of voice {voice.voice_id!r}")
    if audio.size == 0 or not np.any(audio):
        raise ValueError(f"voice {voice.voice_id!r} produced no audio for {text!r}")
    out = _resample(audio.astype(np.float64), rate, sample_rate)
    return np.clip(out, -1.0, 1.0).astype(np.float32)


# --- realism ------------------------------------------------------------------------------------


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
    text: str, voice: Voice, sample_rate: int, rng: np.random.Generator
) -> np.ndarray:
    """Speak text like a recorded query: random silences, gain and a faint pink noise floor."""
    speech = _trim(synthesize(text, voice, sample_rate).astype(np.float64), sample_rate)
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


# --- the corpus ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Item:
    """One utterance to render: its index (for its seed), id, spoken text and voice."""

    index: int
    utterance_id: str
    spoken: str
    voice: Voice


@dataclass(frozen=True)
class _ShardJob:
    """Utterances one fresh worker process renders in order."""

    audio_dir: str
    seed: int
    sample_rate: int
    items: tuple[_Item, ...]


def _utterance_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of one utterance's rendering, independent of worker and order."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2, index)))


def _render_shard(job: _ShardJob) -> list[float]:
    """Render and write one shard of utterances (in a fresh process); return durations."""
    durations = []
    for item in job.items:
        audio = render_utterance(
            item.spoken, item.voice, job.sample_rate, _utterance_rng(job.seed, item.index)
        )
        path = Path(job.audio_dir) / f"{item.utterance_id}.wav"
        sf.write(path, audio, job.sample_rate, subtype="PCM_16", format="WAV")
        durations.append(audio.size / job.sample_rate)
    return durations


def _mp_context() -> multiprocessing.context.BaseContext:
    """Processes forked from a clean server (fast, fresh espeak state), or spawned."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        if __name__ != "__main__":
            ctx.set_forkserver_preload([__name__])
        return ctx
    return multiprocessing.get_context("spawn")


def _assign_voices(n: int, n_voices: int, seed: int) -> list[int]:
    """Voice index per utterance: shuffled rounds, so every voice gets its share."""
    rng = np.random.default_rng([seed, 1])
    order: list[int] = []
    while len(order) < n:
        order.extend(int(i) for i in rng.permutation(n_voices))
    return order[:n]


def _corpus_params(
    n_utterances: int,
    seed: int,
    era_weights: Mapping[str, float],
    voices: Sequence[Voice],
    texts: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The parameters that define a corpus (stored in corpus.json, compared on reuse)."""
    params: dict[str, Any] = {
        "format_version": CORPUS_FORMAT_VERSION,
        "n_utterances": n_utterances,
        "seed": seed,
        "era_weights": {k: float(era_weights[k]) for k in sorted(era_weights)},
        "sample_rate": CORPUS_SAMPLE_RATE,
        "shard_size": SHARD_SIZE,
        "voices": [asdict(v) for v in voices],
    }
    if texts is not None:
        params["texts_sha256"] = hashlib.sha256("\n".join(texts).encode()).hexdigest()
    return params


def spoken_queries(texts: Sequence[str], n_utterances: int) -> list[Query]:
    """Given transcripts, cycled to `n_utterances` (re-speaking labelled production queries)."""
    cleaned = [t.strip() for t in texts if t.strip()]
    if not cleaned:
        raise ValueError("expected at least one non-empty transcript to speak, got none")
    return [
        Query(text=cleaned[i % len(cleaned)], intent="respoken", entities=(), era="respoken")
        for i in range(n_utterances)
    ]


def _sha256_file(path: Path) -> str:
    """Hex sha256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _content_sha256(root: Path, audio_paths: Sequence[str]) -> str:
    """One hash over the manifest and every clip, in manifest order."""
    digest = hashlib.sha256((root / "manifest.csv").read_bytes())
    for rel in audio_paths:
        digest.update(hashlib.sha256((root / rel).read_bytes()).digest())
    return digest.hexdigest()


def _check_existing(out_dir: Path, params: dict[str, Any]) -> bool:
    """True if out_dir holds this very corpus; raise if it holds anything else; False if empty."""
    if not out_dir.exists():
        return False
    if not out_dir.is_dir():
        raise ValueError(f"{out_dir} exists and is not a folder; choose another corpus folder")
    info_path = out_dir / "corpus.json"
    if not info_path.exists():
        if any(out_dir.iterdir()):
            raise ValueError(
                f"{out_dir} is not empty and holds no corpus.json, so it was not made by "
                "build_corpus; choose another folder (existing data is never overwritten)"
            )
        return False
    info = json.loads(info_path.read_text(encoding="utf-8"))
    stored = info.get("params", {})
    wanted = json.loads(json.dumps(params))
    if stored != wanted:
        differing = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
        raise ValueError(
            f"{out_dir} already holds a corpus built with different parameters "
            f"(differing: {', '.join(differing)}); choose another folder "
            "(existing data is never overwritten)"
        )
    manifest = out_dir / "manifest.csv"
    if not manifest.exists() or _sha256_file(manifest) != info.get("manifest_sha256"):
        raise ValueError(
            f"{manifest} is missing or was modified after it was built; rebuild into another folder"
        )
    with manifest.open(newline="", encoding="utf-8") as f:
        paths = [row["audio_path"] for row in csv.DictReader(f)]
    missing = [p for p in paths if not (out_dir / p).exists()]
    if missing:
        raise ValueError(
            f"{out_dir} misses {len(missing)} clips (e.g. {missing[0]}); "
            "rebuild into another folder"
        )
    return True


def _write_manifest(path: Path, rows: Sequence[Mapping[str, str]]) -> None:
    """Write manifest.csv with fixed columns and line endings."""
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def _publish(tmp: Path, out_dir: Path, params: dict[str, Any]) -> None:
    """Move a finished corpus into place; accept a twin built meanwhile, never overwrite."""
    if out_dir.exists() and out_dir.is_dir() and not any(out_dir.iterdir()):
        out_dir.rmdir()
    try:
        os.rename(tmp, out_dir)
    except OSError:
        if _check_existing(out_dir, params):  # another run published the same corpus first
            shutil.rmtree(tmp, ignore_errors=True)
            return
        raise


def build_corpus(
    out_dir: Path,
    n_utterances: int,
    seed: int,
    era_weights: Mapping[str, float] = DEFAULT_ERA_WEIGHTS,
    voices: Sequence[Voice] | None = None,
    workers: int | None = None,
    progress: bool = True,
    texts: Sequence[str] | None = None,
    id_prefix: str = "utt",
) -> Path:
    """Synthesise (or reuse) a voice-search corpus: audio/<id>.wav + manifest.csv + corpus.json.

    With `texts`, those transcripts are spoken (cycled to `n_utterances`, each round by other
    voices) instead of generated queries, and `era_weights` is not used.
    """
    out_dir = Path(out_dir)
    if not isinstance(n_utterances, int) or n_utterances < 1:
        raise ValueError(f"expected a positive number of utterances, got {n_utterances!r}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"expected a non-negative integer seed, got {seed!r}")
    voices = list(list_voices(DEFAULT_VOICE_SEED) if voices is None else voices)
    if not voices or not all(isinstance(v, Voice) for v in voices):
        raise ValueError(f"expected a non-empty sequence of Voice, got {voices!r:.200}")
    if len({v.voice_id for v in voices}) != len(voices):
        raise ValueError("expected voices with distinct voice_id values")
    for voice in voices:
        check_voice(voice)
    workers = (os.cpu_count() or 1) if workers is None else workers
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"expected at least one worker, got {workers!r}")
    if texts is None:
        queries = generate_queries(n_utterances, seed, era_weights)  # validates era_weights
    else:
        queries = spoken_queries(texts, n_utterances)
    params = _corpus_params(n_utterances, seed, era_weights, voices, texts)
    if id_prefix != "utt":
        params["id_prefix"] = id_prefix
    if _check_existing(out_dir, params):
        logger.info("reusing corpus %s (same parameters)", out_dir)
        return out_dir

    assignment = _assign_voices(n_utterances, len(voices), seed)
    width = max(6, len(str(n_utterances - 1)))
    items = [
        _Item(
            i,
            f"{id_prefix}-{i:0{width}d}",
            normalise_transcript(q.text, drop_fillers=()),
            voices[assignment[i]],
        )
        for i, q in enumerate(queries)
    ]
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        audio_dir = tmp / "audio"
        audio_dir.mkdir()
        jobs = [
            _ShardJob(str(audio_dir), seed, CORPUS_SAMPLE_RATE, tuple(items[s : s + SHARD_SIZE]))
            for s in range(0, len(items), SHARD_SIZE)
        ]
        start = time.perf_counter()
        durations: list[float] = []
        with (
            _mp_context().Pool(min(workers, len(jobs)), maxtasksperchild=1) as pool,
            tqdm(total=n_utterances, desc="synthesising", unit="utt", disable=not progress) as bar,
        ):
            for shard_durations in pool.imap(_render_shard, jobs):
                durations.extend(shard_durations)
                bar.update(len(shard_durations))
        elapsed = time.perf_counter() - start

        rows = [
            {
                "utterance_id": item.utterance_id,
                "audio_path": f"audio/{item.utterance_id}.wav",
                "transcript": q.text,
                "voice": item.voice.voice_id,
                "synthesizer": item.voice.synthesizer,
                "intent": q.intent,
                "entities": "|".join(q.entities),
                "era": q.era,
            }
            for item, q in zip(items, queries, strict=True)
        ]
        _write_manifest(tmp / "manifest.csv", rows)
        info = {
            "params": params,
            "manifest_sha256": _sha256_file(tmp / "manifest.csv"),
            "content_sha256": _content_sha256(tmp, [r["audio_path"] for r in rows]),
            "total_duration_s": round(sum(durations), 3),
            "engines": {"espeak-ng": espeak_version(), "flite": list(flite_voices())},
        }
        (tmp / "corpus.json").write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
        _publish(tmp, out_dir, params)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info(
        "synthesised %d utterances (%.0f s of audio) in %.1f s with %d workers into %s",
        n_utterances,
        sum(durations),
        elapsed,
        min(workers, len(jobs)),
        out_dir,
    )
    return out_dir
