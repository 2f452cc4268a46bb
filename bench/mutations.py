"""Hostile audio for the decoders: seed files and the ways an upload or a stored clip goes
wrong (random bytes, flipped header bytes, truncation, header fields that disagree with the
bytes, huge declared lengths). The fuzz tests draw them through hypothesis; `bench faults`
runs many more through the same `check_decoder` (bench/ holds them: tests are not a library)."""

from __future__ import annotations

import io
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import soundfile as sf

from models.audio import SAMPLE_RATE, DecodedAudio, UnusableAudio, decode_audio

MAX_DURATION_S = 12.0
# interesting 32-bit values for a size or rate field
INTERESTING = (0, 1, 2, 0x7FFF, 0xFFFF, 0x7FFEFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)


def encode(fmt: str, subtype: str | None, rate: int, channels: int, seconds: float) -> bytes:
    """A short noise clip in the given container."""
    n = max(1, int(rate * seconds))
    audio = 0.1 * np.random.default_rng(0).standard_normal((n, channels))
    buffer = io.BytesIO()
    sf.write(buffer, audio.astype(np.float32), rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def seed_files() -> dict[str, bytes]:
    """One clean clip per container and sample layout."""
    return {
        "wav16": encode("WAV", "PCM_16", SAMPLE_RATE, 1, 0.3),
        "wav-float-stereo": encode("WAV", "FLOAT", 44100, 2, 0.2),
        "wav24-8k": encode("WAV", "PCM_24", 8000, 1, 0.3),
        "flac": encode("FLAC", "PCM_16", SAMPLE_RATE, 1, 0.3),
        "ogg": encode("OGG", "VORBIS", SAMPLE_RATE, 1, 0.3),
    }


def fmt_offset(data: bytes) -> int | None:
    """Where a WAV's fmt chunk body starts (None if it has none)."""
    at = data.find(b"fmt ")
    return at + 8 if at >= 0 else None


def flip_header_bytes(data: bytearray, rng: random.Random) -> None:
    for _ in range(rng.randint(1, 8)):
        data[rng.randrange(min(len(data), 64))] = rng.randrange(256)


def truncate(data: bytearray, rng: random.Random) -> None:
    del data[rng.randrange(len(data)) :]


def overwrite_field(data: bytearray, rng: random.Random) -> None:
    at = rng.randrange(0, max(1, min(len(data) - 4, 60)))
    value = rng.choice([*INTERESTING, rng.randrange(2**32)])
    data[at : at + 4] = struct.pack("<I", value)


def disagree_fmt(data: bytearray, rng: random.Random) -> None:
    """Channels, rate, byte rate, frame size or bits in a WAV fmt chunk set to a new value."""
    at = fmt_offset(bytes(data))
    if at is None or at + 16 > len(data):
        return flip_header_bytes(data, rng)
    field_at, width = rng.choice([(2, 2), (4, 4), (8, 4), (12, 2), (14, 2)])
    value = rng.choice([0, 1, 2, 3, 8, 24, 255, 44100, 65535, rng.randrange(2 ** (8 * width))])
    data[at + field_at : at + field_at + width] = (value % 2 ** (8 * width)).to_bytes(
        width, "little"
    )


def scribble(data: bytearray, rng: random.Random) -> None:
    for _ in range(rng.randint(1, 30)):
        data[rng.randrange(len(data))] = rng.randrange(256)


MUTATIONS: dict[str, Callable[[bytearray, random.Random], None]] = {
    "flip-header": flip_header_bytes,
    "truncate": truncate,
    "overwrite-field": overwrite_field,
    "disagree-fmt": disagree_fmt,
    "scribble": scribble,
}


def mutated(seed: bytes, names: list[str], rng: random.Random) -> bytes:
    data = bytearray(seed)
    for name in names:
        if data:
            MUTATIONS[name](data, rng)
    return bytes(data)


@dataclass(frozen=True)
class Outcome:
    decoded: DecodedAudio | None
    code: str | None


def check_decoder(data: bytes) -> Outcome:
    """Run the upload decoder: a checked DecodedAudio or a typed refusal. Anything else (an
    unhandled exception, samples that break the decoder's promise) propagates as an error."""
    try:
        decoded = decode_audio(data, MAX_DURATION_S)
    except UnusableAudio as refused:
        assert refused.code and refused.message, "a refusal names its code and reason"
        return Outcome(None, refused.code)
    samples = decoded.samples
    assert samples.dtype == np.float32 and samples.ndim == 1, "16 kHz mono float32"
    assert np.isfinite(samples).all(), "decoded samples are finite"
    assert samples.size <= MAX_DURATION_S * SAMPLE_RATE + 2, "no more than the limit"
    return Outcome(decoded, None)
