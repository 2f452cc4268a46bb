"""Rendering a planned corpus: each shard's blocks of utterances, every block in a fresh process.

espeak carries state between utterances within a process (see tasks.synthesis.espeak), so the
plan cuts the utterances into fixed blocks of BLOCK_SIZE (tasks.synthesis.corpus_build) and
every block renders in a fresh child process. Engines with a slow start (festival, Kokoro) speak
a whole shard first, and their blocks render from that output. `build_corpus` runs plan,
render and publish one after another (tests, benchmarks), where the ingest flow maps
`synthesise_shard` over the shards through the scope's task runner.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
from prefect import task

from tasks.corpus import DEFAULT_ERA_WEIGHTS
from tasks.synthesis.corpus_build import (
    BATCHED_SYNTHESIZERS,
    BLOCK_SIZE,
    SPOKEN_DIR,
    Utterance,
    discard_partial,
    finish_corpus,
    plan_corpus,
    utterance_rng,
)
from tasks.synthesis.dsp import render_utterance
from tasks.synthesis.festival import festival_synth_many
from tasks.synthesis.kokoro import kokoro_synth_many
from tasks.synthesis.voices import Voice, engine_of


def _spoken_path(audio_dir: Path, item: Utterance) -> Path:
    """Where an engine's output spoken ahead of its block waits (festival, in batches)."""
    return audio_dir.parent / SPOKEN_DIR / f"{item.utterance_id}.wav"


def speak_batched(audio_dir: Path, utterances: Sequence[Utterance]) -> int:
    """Speak a shard's festival utterances with one festival process and its Kokoro ones with
    one loaded model; store the raw output."""
    festival = [u for u in utterances if engine_of(u.voice.synthesizer) == "festival"]
    kokoro = [u for u in utterances if engine_of(u.voice.synthesizer) == "kokoro"]
    batch = festival + kokoro
    if not batch:
        return 0
    spoken = festival_synth_many([(u.spoken, u.voice) for u in festival])
    spoken += kokoro_synth_many([(u.spoken, u.voice) for u in kokoro])
    (audio_dir.parent / SPOKEN_DIR).mkdir(exist_ok=True)
    for item, (audio, rate) in zip(batch, spoken, strict=True):
        sf.write(_spoken_path(audio_dir, item), audio, rate, subtype="FLOAT", format="WAV")
    return len(batch)


def _spoken(audio_dir: Path, item: Utterance) -> tuple[np.ndarray, int] | None:
    """The engine output spoken ahead for an utterance, if any."""
    path = _spoken_path(audio_dir, item)
    if item.voice.synthesizer not in BATCHED_SYNTHESIZERS or not path.is_file():
        return None
    audio, rate = sf.read(path, dtype="float32")
    return audio, int(rate)


def render_block(audio_dir: Path, seed: int, sample_rate: int, block: Sequence[Utterance]) -> None:
    """Render and write one block of utterances in this process, in order."""
    for item in block:
        audio = render_utterance(
            item.spoken,
            item.voice,
            sample_rate,
            utterance_rng(seed, item.index),
            _spoken(audio_dir, item),
        )
        path = audio_dir / f"{item.utterance_id}.wav"
        sf.write(path, audio, sample_rate, subtype="PCM_16", format="WAV")


def _render_block_child(
    conn: multiprocessing.connection.Connection,
    audio_dir: Path,
    seed: int,
    sample_rate: int,
    block: Sequence[Utterance],
) -> None:
    """Child-process entry: render a block, report '' or the error's traceback."""
    try:
        render_block(audio_dir, seed, sample_rate, block)
        conn.send("")
    except BaseException:
        conn.send(traceback.format_exc())
    finally:
        conn.close()


def _fresh_process_context() -> multiprocessing.context.BaseContext:
    """Processes forked from a clean server (fast, fresh espeak state), or spawned."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([__name__])
        return ctx
    return multiprocessing.get_context("spawn")


def _render_block_fresh(
    audio_dir: Path, seed: int, sample_rate: int, block: list[Utterance]
) -> None:
    """Render one block in a fresh child process (isolation of espeak's state, not a pool)."""
    ctx = _fresh_process_context()
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(  # type: ignore[attr-defined]
        target=_render_block_child, args=(send, audio_dir, seed, sample_rate, block)
    )
    child.start()
    send.close()
    try:
        error = receive.recv() if receive.poll(None) else "no report"
    except EOFError:
        error = "the child process died without a report"
    child.join()
    written = all((audio_dir / f"{item.utterance_id}.wav").is_file() for item in block)
    # The child's report is what counts: the forkserver answers 255 for a child whose exit
    # status it could not read back (seen with a temporary Prefect server in the parent)
    # although the child had written every file and said so.
    if error or not written or child.exitcode not in (0, 255):
        first = block[0].utterance_id if block else "?"
        raise RuntimeError(
            f"rendering the block from {first} failed (exit code {child.exitcode}): {error}"
        )


@task(name="synthesise-shard")
def synthesise_shard(
    audio_dir: Path, seed: int, sample_rate: int, utterances: list[Utterance]
) -> int:
    """Render one shard into audio_dir, each block of BLOCK_SIZE in a fresh process; count.

    festival's utterances of the shard are spoken first by one festival process (its start-up
    is the slow part), and their blocks render from that output.
    """
    speak_batched(audio_dir, utterances)
    for start in range(0, len(utterances), BLOCK_SIZE):
        _render_block_fresh(audio_dir, seed, sample_rate, utterances[start : start + BLOCK_SIZE])
    return len(utterances)


def build_corpus(
    out_dir: Path,
    n_utterances: int,
    seed: int,
    era_weights: Mapping[str, float] = DEFAULT_ERA_WEIGHTS,
    voices: Sequence[Voice] | None = None,
    texts: Sequence[str] | None = None,
    id_prefix: str = "utt",
    n_shards: int = 1,
    engine_utterances: Mapping[str, int] | None = None,
) -> Path:
    """Synthesise (or reuse) a corpus: audio/<id>.wav + manifest.csv + corpus.json, shards in turn.

    The same as the ingest flow's synthesis without its fan-out; `n_shards` changes only how the
    work is cut, never the bytes written.
    """
    plan = plan_corpus(
        out_dir,
        n_utterances,
        seed,
        era_weights,
        voices,
        n_shards,
        texts,
        id_prefix,
        engine_utterances=engine_utterances,
    )
    try:
        for shard in plan.shards:
            synthesise_shard.fn(plan.audio_dir, plan.seed, plan.sample_rate, shard)
    except BaseException:
        discard_partial.fn(plan)
        raise
    return finish_corpus.fn(plan)
