"""Kokoro benchmark: the neural engine's speed on one thread, and what it adds to the cycle.

- x_real_time_one_thread: seconds of audio per second of this process's CPU time, over
  SPEED_CLIPS generated queries by the five voices (the model is loaded beforehand);
- cycle_added_seconds: wall time of the default corpus's Kokoro utterances spoken as the
  ingest flow speaks them, each shard's ahead of its blocks, the shards side by side on the
  scope's workers (model load included); the corpus size is unchanged (they replace other
  voices' clips), so this is what the cycle gains in length. On a busy machine the wall time
  grows with the load; cycle_added_cpu_seconds does not (a quiet 2-core machine takes about
  that over the workers).
"""

from __future__ import annotations

import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import soundfile as sf

from bench.report import write_results
from data_contracts.scoping import Scope

SPEED_CLIPS = 10


def _speed() -> dict[str, float]:
    """x real time of Kokoro on one thread: audio seconds over CPU seconds and wall seconds."""
    from tasks.corpus import generate_queries
    from tasks.synthesis import voice_from_id
    from tasks.synthesis.kokoro import KOKORO_VOICES, kokoro_synth, kokoro_synth_many
    from tasks.text import normalise_transcript

    voices = [voice_from_id(f"kokoro/{name}", 13) for name in KOKORO_VOICES]
    t0 = time.perf_counter()
    kokoro_synth("load", voices[0])
    load_s = time.perf_counter() - t0
    texts = [
        normalise_transcript(q.text, drop_fillers=()) for q in generate_queries(SPEED_CLIPS, 29)
    ]
    items = [(t, voices[i % len(voices)]) for i, t in enumerate(texts)]
    cpu0, wall0 = time.process_time(), time.perf_counter()
    spoken = kokoro_synth_many(items)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    audio_s = sum(len(a) / rate for a, rate in spoken)
    return {
        "speed_clips": SPEED_CLIPS,
        "speed_audio_seconds": round(audio_s, 2),
        "x_real_time_one_thread": round(audio_s / cpu, 3),
        "x_real_time_one_thread_wall": round(audio_s / wall, 3),
        "model_load_seconds": round(load_s, 2),
    }


def _cycle_cost(scope: Scope) -> dict[str, float]:
    """Speak the default corpus's Kokoro utterances shard by shard, as the ingest flow does."""
    from tasks.fanout import max_workers
    from tasks.sources import plan_synthetic_corpus
    from tasks.synthesis.corpus_build import discard_partial
    from tasks.synthesis.render import speak_batched

    source = next(s for s in scope.sources if s.synthetic is not None)
    assert source.synthetic is not None
    scratch = scope.state.workspace / "bench" / "kokoro"
    shutil.rmtree(scratch, ignore_errors=True)
    workers = max_workers(scope)
    plan = plan_synthetic_corpus.fn(source, scratch, workers)
    try:
        shards = [[u for u in shard if u.voice.synthesizer == "kokoro"] for shard in plan.shards]
        t0, cpu0 = time.perf_counter(), time.process_time()
        with ThreadPoolExecutor(workers) as pool:  # the flow's thread runner for synthesis
            spoken = sum(pool.map(lambda shard: speak_batched(plan.audio_dir, shard), shards))
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        audio_s = sum(sf.info(p).duration for p in (plan.audio_dir.parent / "spoken").glob("*"))
    finally:
        discard_partial.fn(plan)
        shutil.rmtree(scratch, ignore_errors=True)
    return {
        "kokoro_clips": spoken,
        "kokoro_audio_seconds": round(audio_s, 1),
        "workers": workers,
        "cycle_added_seconds": round(wall, 1),
        # load-independent: CPU seconds of the model load and every clip, all workers together
        "cycle_added_cpu_seconds": round(cpu, 1),
    }


def main(scope: Scope, out_dir: Path) -> dict[str, float]:
    """Measure Kokoro's speed and its cost in the default corpus; write kokoro.json."""
    cost = _cycle_cost(scope)  # first: the model loads in it, as in a cycle's synthesis
    figures = {**_speed(), **cost}
    write_results(out_dir, "kokoro", figures)
    return figures
