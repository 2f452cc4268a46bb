"""What the serving benchmark holds HTTP against, measured in this process on the same clips:
`Recognizer.transcribe` as the server runs it (one process, and one process per core), and
the machine's real ceiling, the CPU a clip of the acoustic model and of the beam search, each
timed on its own (bench/serve.py's module docstring says how each is read).

Every figure is measured as the server runs the work: the recogniser loaded in one thread and
run in another (the service loads it in its main or model-poller thread, and its model thread,
`asr-model` in deployments/batcher.py, runs it). That is not a detail: glibc gives each thread
its own malloc arena, and the beam search, which allocates many small objects, takes 0.5-0.6x
the CPU in an arena of its own than in the one that holds the loaded decoder and LM (same
clips, same process: 8.7-10.1 against 17.4-18.8 ms a clip decoded where it was loaded, in the
main thread or in another; with MALLOC_ARENA_MAX=1 the two are the same). Measured where it was
loaded, the "ceiling" was below what the server did (`http_over_ceiling` 1.16).
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import soundfile as sf

RAW_PASSES = 3

T = TypeVar("T")


def in_own_thread(work: Callable[[], T]) -> T:
    """`work()` run in a new thread (an arena of its own, as the server's model thread has:
    load what it runs before, in the calling thread); its result, or its exception here."""
    with ThreadPoolExecutor(1, thread_name_prefix="bench-model") as pool:
        return pool.submit(work).result()


def _batches(wavs: Sequence[bytes], batch_size: int, clips: int) -> list[list[np.ndarray]]:
    """`clips` of the WAVs (cycled) as float32 samples, in batches of `batch_size`."""
    waves = [sf.read(io.BytesIO(w), dtype="float32")[0] for w in wavs]
    return [
        [waves[(start + k) % len(waves)] for k in range(batch_size)]
        for start in range(0, clips, batch_size)
    ]


def raw_throughput(
    recognizer_dir: Path,
    wavs: Sequence[bytes],
    batch_size: int,
    threads: int,
    clips: int,
    int8: bool | None = None,
) -> float:
    """Clips per second of `Recognizer.transcribe` in this process, loaded here and run in a
    thread of its own as the server runs it (median of a few passes); `int8` None: as the
    saved recogniser says (what the server runs)."""
    from models.recognizer import Recognizer

    recognizer = Recognizer.load(recognizer_dir)
    if int8 is not None:
        recognizer = recognizer.with_int8(int8)
    batches = _batches(wavs, batch_size, clips)

    def measure() -> float:
        import torch

        torch.set_num_threads(threads)  # OpenMP settings are per thread: set them in this one
        recognizer.transcribe(batches[0])  # warm-up
        rates = []
        for _ in range(RAW_PASSES):
            started = time.perf_counter()
            for batch in batches:
                recognizer.transcribe(batch)
            rates.append(len(batches) * batch_size / (time.perf_counter() - started))
        return float(np.median(rates))

    return in_own_thread(measure)


def raw_throughput_all_cores(
    recognizer_dir: Path, wavs: Sequence[bytes], batch_size: int, clips: int, processes: int
) -> float:
    """`raw_throughput` in `processes` processes at once (one torch thread each), their rates
    summed (no ceiling: what batching shares is counted once; see `work_cpu_ms`)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(processes, mp_context=context) as pool:
        jobs = [
            pool.submit(raw_throughput, recognizer_dir, list(wavs), batch_size, 1, clips)
            for _ in range(processes)
        ]
        return float(sum(job.result() for job in jobs))


def work_cpu_ms(
    recognizer_dir: Path, wavs: Sequence[bytes], batch_size: int, clips: int
) -> dict[str, float]:
    """CPU milliseconds a clip of the two things a request cannot do without, each timed on
    its own in this process with one torch thread (so the thread's CPU time is all of it):
    the acoustic model (features and network, in batches of `batch_size`) and the beam search
    (one batch's emissions at a time, as `Recognizer.transcribe` decodes them); the best of
    `RAW_PASSES` passes over the clips; loaded here and run in a thread of its own, as the
    server runs them."""
    import torch

    from models.recognizer import Recognizer

    recognizer = Recognizer.load(recognizer_dir)
    batches = [[torch.from_numpy(w) for w in batch] for batch in _batches(wavs, batch_size, clips)]

    def measure() -> dict[str, float]:
        torch.set_num_threads(1)
        passes: list[tuple[float, float]] = []
        with torch.inference_mode():  # as `Recognizer.transcribe` runs
            recognizer.decoder.decode(*recognizer.emissions(batches[0]))  # warm-up
            for _ in range(RAW_PASSES):
                model_s = decode_s = 0.0
                for batch in batches:
                    started = time.thread_time()
                    emissions = recognizer.emissions(batch)
                    model_s += time.thread_time() - started
                    started = time.thread_time()
                    recognizer.decoder.decode(*emissions)
                    decode_s += time.thread_time() - started
                passes.append((model_s, decode_s))
        n = len(batches) * batch_size
        # the best pass of each: a ceiling is what the machine can do (the same clips' CPU
        # time varied by 20 % between passes of one process on this shared machine)
        return {
            "model": 1000.0 * min(m for m, _ in passes) / n,
            "decode": 1000.0 * min(d for _, d in passes) / n,
        }

    return in_own_thread(measure)


def ceiling_figures(
    work: dict[str, float], cores: int, figures: dict[str, Any], concurrencies: Sequence[int]
) -> dict[str, Any]:
    """The machine's real ceiling: every core doing nothing but the model and the beam search,
    `cores * 1000 / (model + decode CPU ms a clip)` clips a second; HTTP's throughput over it
    (at most 1, but for the machine's noise) and the server's CPU a request over that work."""
    per_clip = work["model"] + work["decode"]
    ceiling = cores * 1000.0 / per_clip
    best = max(figures[f"rps_c{c}"] for c in concurrencies)
    out: dict[str, Any] = {
        "model_cpu_ms_per_clip": round(work["model"], 2),
        "decode_cpu_ms_per_clip": round(work["decode"], 2),
        "ceiling_rps_all_cores": round(ceiling, 1),
        "http_over_ceiling": round(best / ceiling, 3),
    }
    if 8 in concurrencies:
        out["http_over_ceiling_c8"] = round(figures["rps_c8"] / ceiling, 3)
        if "server_cpu_ms_per_req_c8" in figures:
            out["server_cpu_over_work_c8"] = round(
                figures["server_cpu_ms_per_req_c8"] / per_clip, 3
            )
    return out
