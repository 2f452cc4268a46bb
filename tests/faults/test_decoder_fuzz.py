"""Decoder fuzzing: hostile bytes through the upload decoder and the ingestion probe always end
in a checked clip or a typed refusal, never an unhandled exception, a hang or a blow-up."""

from __future__ import annotations

import io
import random
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.mutations import (
    MAX_DURATION_S,
    MUTATIONS,
    check_decoder,
    encode,
    fmt_offset,
    mutated,
    seed_files,
)
from data_contracts.scoping import AudioScope, DataRules
from models.audio import UnusableAudio, decode_audio, read_audio_file
from tasks.ingestion import RowJob, process_row

SEEDS = seed_files()
SEED_SECONDS = {name: sf.info(io.BytesIO(data)).duration for name, data in SEEDS.items()}
# a hang is a test failure, not a slow pass: far above any real decode of these tiny clips
FUZZ = settings(max_examples=150, deadline=5000, suppress_health_check=[HealthCheck.too_slow])

hostile = st.one_of(
    st.binary(max_size=512),
    st.tuples(
        st.sampled_from(sorted(SEEDS)),
        st.lists(st.sampled_from(sorted(MUTATIONS)), min_size=1, max_size=3),
        st.integers(0, 2**32 - 1),
    ),
)


def _bytes_of(case: bytes | tuple[str, list[str], int]) -> tuple[bytes, str | None, list[str]]:
    if isinstance(case, bytes):
        return case, None, []
    seed, names, rng_seed = case
    return mutated(SEEDS[seed], names, random.Random(rng_seed)), seed, names


@FUZZ
@given(hostile)
def test_upload_decoder_answers_every_input_with_a_clip_or_a_typed_refusal(
    case: bytes | tuple[str, list[str], int],
) -> None:
    data, seed, names = _bytes_of(case)
    outcome = check_decoder(data)
    if (
        outcome.decoded is not None
        and seed
        and seed.startswith("wav")
        and names == ["disagree-fmt"]
    ):
        # a WAV whose fmt no longer matches its bytes is refused, never decoded in part
        seconds = outcome.decoded.samples.size / 16000
        assert seconds == pytest.approx(SEED_SECONDS[seed], rel=0.01)


@pytest.fixture(scope="module")
def probe_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("probe")


def _row(uid: str) -> dict[str, str]:
    return {
        "utterance_id": uid,
        "audio_path": f"{uid}.wav",
        "transcript": "play jazz",
        "voice": "v1",
        "synthesizer": "test",
        "intent": "music",
        "entities": "",
        "era": "launch",
        "source": "fuzz",
    }


@settings(FUZZ, max_examples=60, suppress_health_check=list(HealthCheck))
@given(hostile)
def test_ingestion_probe_quarantines_hostile_files_with_a_reason(
    probe_root: Path, case: bytes | tuple[str, list[str], int]
) -> None:
    data, _, _ = _bytes_of(case)
    audio = probe_root / "clip.wav"
    audio.write_bytes(data)
    out = probe_root / "out"
    out.mkdir(exist_ok=True)
    job = RowJob(0, _row("clip"), audio, probe_root)
    row, reason = process_row(job, out, DataRules(), AudioScope())
    assert (row is None) != (reason is None)
    if reason is not None:
        assert reason.strip()


def _fmt_field(wav: bytes, offset: int, width: int, value: int) -> bytes:
    data = bytearray(wav)
    at = fmt_offset(wav)
    assert at is not None
    data[at + offset : at + offset + width] = value.to_bytes(width, "little")
    return bytes(data)


def _data_size(wav: bytes, size: int) -> bytes:
    data = bytearray(wav)
    at = data.index(b"data")
    data[at + 4 : at + 8] = size.to_bytes(4, "little")
    return bytes(data)


WAV = encode("WAV", "PCM_16", 16000, 1, 0.5)
DISAGREEING = {
    "mono data declared stereo": _fmt_field(WAV, 2, 2, 2),
    "16 kHz data declared 8 kHz": _fmt_field(WAV, 4, 4, 8000),
    "byte rate of another rate": _fmt_field(WAV, 8, 4, 96000),
    "frame size of 4 bytes": _fmt_field(WAV, 12, 2, 4),
    "24-bit samples in 2 bytes": _fmt_field(WAV, 14, 2, 24),
    "data size not whole frames": _data_size(WAV[:-1], len(WAV) - 45),
    "huge declared length": _data_size(WAV, 0x7FFEFFFF),
    "cut mid-sample": WAV[: len(WAV) // 2 + 1],
}


@pytest.mark.parametrize("case", list(DISAGREEING))
def test_a_wav_whose_header_disagrees_with_its_bytes_is_refused(case: str, tmp_path: Path) -> None:
    with pytest.raises(UnusableAudio) as refused:
        decode_audio(DISAGREEING[case], MAX_DURATION_S)
    assert refused.value.code == "undecodable_audio"
    path = tmp_path / "clip.wav"
    path.write_bytes(DISAGREEING[case])
    with pytest.raises(UnusableAudio):  # the ingestion probe reads stored files the same way
        read_audio_file(path, MAX_DURATION_S)


def test_a_small_file_that_expands_past_the_limit_is_refused_before_it_is_decoded() -> None:
    # ten minutes of silence compress to a few KB of FLAC: decoding it whole would take 38 MB
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros(600 * 16000, np.float32), 16000, format="FLAC")
    data = buffer.getvalue()
    assert len(data) < 500_000
    tracemalloc.start()
    try:
        with pytest.raises(UnusableAudio) as refused:
            decode_audio(data, MAX_DURATION_S)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert refused.value.code == "audio_too_long"
    assert peak < 5_000_000, f"refusing took {peak} bytes"


def test_every_mutation_is_exercised() -> None:
    rng = random.Random(1)
    for name in MUTATIONS:
        for seed in SEEDS.values():
            assert mutated(seed, [name], rng) != seed or name == "truncate"
