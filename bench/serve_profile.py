"""The serving benchmark's profile: py-spy samples the server's threads under load, and each
thread's CPU (psutil) is split over what its samples were doing, by stage of the request
path. bench/serve.py runs it with the harness (bench/serve_harness.py).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.serve_harness import process_tree, run_load

# Where a sample of the server's stacks is spent: the innermost frame that one of these rules
# names decides. A rule is (category, path part, function-name prefix or ""); py-spy writes a
# frame as "function (path:line)". The first rule that matches a frame wins, so the more
# specific come first; frames no rule names (numpy, torch, pydantic, asyncio futures,
# threading) count for the nearest named frame above them.
_AUDIO = "/models/audio.py"
PROFILE_RULES: tuple[tuple[str, str, str], ...] = (
    *(("audio_features", _AUDIO, f) for f in ("compute_", "_frame_", "_power_", "_check_", "_db")),
    ("upload_decode", _AUDIO, ""),
    ("upload_decode", "/soundfile.py", ""),
    ("upload_decode", "/soxr/", ""),
    ("upload_decode", "/deployments/pipeline.py", "decode_upload"),
    ("ctc_beam_decoding", "/models/decoder.py", ""),
    ("ctc_beam_decoding", "/torchaudio/models/decoder/", ""),
    ("model_forward", "/models/recognizer.py", ""),
    ("model_forward", "/models/ctc.py", ""),
    ("model_forward", "/models/features.py", ""),
    ("batcher", "/deployments/batcher.py", ""),
    ("prediction_log", "/deployments/pipeline.py", ""),
    ("prediction_log", "/data_contracts/prediction_store.py", ""),
    ("prediction_log", "/sqlalchemy/", ""),
    ("prediction_log", "/sqlite3/", ""),
    ("metrics", "/deployments/metrics.py", ""),
    ("metrics", "/prometheus_client/", ""),
    ("metrics", "/bentoml/_internal/server/http/instruments.py", ""),
    ("multipart_parsing", "/_bentoml_impl/serde.py", "MultipartSerde.parse_request"),
    ("multipart_parsing", "/_bentoml_sdk/io_models.py", "IOMixin.from_http_request"),
    ("multipart_parsing", "/_bentoml_sdk/validators.py", ""),
    ("multipart_parsing", "/starlette/formparsers.py", ""),
    ("multipart_parsing", "/multipart/", ""),
    ("multipart_parsing", "/python_multipart/", ""),
    ("multipart_parsing", "/starlette/datastructures.py", ""),
    ("multipart_parsing", "/tempfile.py", ""),
    ("multipart_parsing", "/bentoml/_internal/utils/filesystem.py", ""),
    ("multipart_parsing", "/starlette/requests.py", ""),
    ("json_response", "/_bentoml_sdk/io_models.py", ""),
    ("json_response", "/_bentoml_impl/serde.py", ""),
    ("json_response", "/starlette/responses.py", ""),
    ("handler", "/deployments/service.py", ""),
    ("handler", "/deployments/api_types.py", ""),
    ("our_middlewares", "/deployments/admission.py", ""),
    ("our_middlewares", "/deployments/errors.py", ""),
    ("our_middlewares", "/deployments/openapi.py", ""),
    ("logging", "/logging/", ""),
    ("bentoml_http_stack", "/opentelemetry/", ""),
    ("bentoml_http_stack", "/bentoml/_internal/server/", ""),
    ("bentoml_http_stack", "/_bentoml_impl/server/", ""),
    ("bentoml_http_stack", "/bentoml/_internal/context.py", ""),
    ("bentoml_http_stack", "/starlette/", ""),
    ("bentoml_http_stack", "/uvicorn/middleware/", ""),
    ("uvicorn_event_loop", "/uvicorn/", ""),
    # the loop itself (uvloop's C, so its own frames stop at Runner.run); not asyncio's
    # futures, whose callbacks count for the thread that resolves them
    *(("uvicorn_event_loop", f"/asyncio/{f}.py", "") for f in ("runners", "base_events", "events")),
    ("uvicorn_event_loop", "/uvloop/", ""),
    ("uvicorn_event_loop", "/selectors.py", ""),
)
PROFILE_CATEGORIES = (
    *dict.fromkeys(name for name, _, _ in PROFILE_RULES),
    "unsampled_threads",
    "other",
)


def _frame_parts(frame: str) -> tuple[str, str]:
    """(function, path) of one py-spy frame, "function (path:line)"."""
    function, _, where = frame.partition(" (")
    return function, where.rpartition(":")[0] or where


def classify_stack(frames: Sequence[str]) -> str:
    """The category of one sampled stack (frames root first, as py-spy writes them)."""
    for frame in reversed(frames):
        function, path = _frame_parts(frame)
        for name, part, prefix in PROFILE_RULES:
            if part in path and function.startswith(prefix):
                return name
    return "other"


def _thread_times(pid: int) -> dict[int, float]:
    """CPU seconds so far of every thread of a process tree, by OS thread id."""
    import psutil

    times: dict[int, float] = {}
    for proc in process_tree(pid):
        try:
            for thread in proc.threads():
                times[thread.id] = thread.user_time + thread.system_time
        except psutil.NoSuchProcess:
            continue
    return times


def _read_samples(raw: Path) -> tuple[dict[int, Counter[str]], dict[int, str]]:
    """py-spy's raw output (`--threads --subprocesses`): sample counts by OS thread id and
    category, and the threads' names."""
    import re

    by_thread: dict[int, Counter[str]] = {}
    names: dict[int, str] = {}
    thread_frame = re.compile(r"thread \((\d+)\): ?(.*)")
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        at = next((i for i, f in enumerate(frames) if thread_frame.match(f)), None)
        if at is None:
            continue
        match = thread_frame.match(frames[at])
        assert match is not None
        tid = int(match.group(1))
        process = frames[at - 1] if at else ""  # the innermost process line, if any
        kind = "worker" if "_bentoml_impl.worker" in process else "serve"
        names[tid] = f"{kind} {match.group(2).strip() or 'thread'}"
        by_thread.setdefault(tid, Counter())[classify_stack(frames[at + 1 :])] += int(count)
    return by_thread, names


def attribute_cpu(samples: dict[int, Counter[str]], cpu_ms: dict[int, float]) -> Counter[str]:
    """Each thread's CPU (by OS thread id) split over the categories of its samples; CPU of
    a thread without samples is `unsampled_threads`."""
    out: Counter[str] = Counter()
    for tid, ms in cpu_ms.items():
        counts = samples.get(tid)
        total = sum(counts.values()) if counts else 0
        if not counts or not total:
            out["unsampled_threads"] += ms
            continue
        for category, n in counts.items():
            out[category] += ms * n / total
    return out


def py_spy() -> str | None:
    """The py-spy executable (a measuring tool in the lock), None where it is missing."""
    import shutil

    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.is_file() else shutil.which("py-spy")


def profile_load(
    url: str,
    server_pid: int,
    bodies: Sequence[tuple[bytes, str]],
    concurrency: int,
    requests: int,
    scratch: Path,
    rate_hz: int = 100,
) -> dict[str, Any]:
    """Where the server's CPU per request goes under `requests` POSTs at `concurrency`.

    py-spy samples every thread of the server's process tree (not paused: `--nonblocking`;
    idle threads left out) while the load runs; each thread's CPU time over the load
    (psutil) is split over the categories of its samples (`classify_stack`), so the parts
    add up to the measured server CPU per request. CPU of threads with no Python samples
    (torch's intra-op pool, if any) is `unsampled_threads`. py-spy itself runs on the same
    cores, so the load runs a little slower than unprofiled; shares are what it is for.
    """
    spy = py_spy()
    if spy is None:
        return {"skipped": "py-spy is not installed (it is in requirements/lock.txt: make setup)"}
    raw = scratch / "profile.txt"
    command = [spy, "record", "--pid", str(server_pid), "--subprocesses", "--threads"]
    command += ["--nonblocking", "--full-filenames", "--format", "raw", "--rate", str(rate_hz)]
    spy_log = scratch / "py-spy.log"
    with spy_log.open("wb") as log:
        sampler = subprocess.Popen([*command, "-o", str(raw)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 20.0  # it prints this line once it is attached
        while b"Sampling process" not in spy_log.read_bytes():
            if sampler.poll() is not None or time.monotonic() > deadline:
                return {"skipped": f"py-spy did not start: {spy_log.read_text()[-500:]}"}
            time.sleep(0.1)
        before = _thread_times(server_pid)
        result = run_load(url, bodies, concurrency, requests)
        after = _thread_times(server_pid)
    finally:
        if sampler.poll() is None:
            sampler.send_signal(signal.SIGINT)  # py-spy writes its samples on Ctrl-C
            try:
                sampler.wait(timeout=30)
            except subprocess.TimeoutExpired:
                sampler.kill()
    if not raw.is_file():
        return {"skipped": f"py-spy wrote no samples: {spy_log.read_text()[-500:]}"}
    answered = max(1, len(result["latencies"]))
    samples, names = _read_samples(raw)
    cpu_ms = {tid: (t - before.get(tid, 0.0)) * 1000.0 / answered for tid, t in after.items()}
    ms = attribute_cpu(samples, cpu_ms)
    by_thread: Counter[str] = Counter()
    for tid, v in cpu_ms.items():
        by_thread[names.get(tid, "unsampled")] += v
    server_ms = sum(ms.values())
    return {
        "concurrency": concurrency,
        "requests": answered,
        "rps_profiled": round(answered / result["wall_s"], 1),
        "samples": sum(sum(c.values()) for c in samples.values()),
        "server_cpu_ms_per_req": round(server_ms, 2),
        "ms_per_req": {c: round(ms[c], 3) for c in PROFILE_CATEGORIES if ms[c]},
        "share": {c: round(ms[c] / server_ms, 3) for c in PROFILE_CATEGORIES if ms[c]},
        "by_thread_ms_per_req": {
            name: round(v, 3) for name, v in sorted(by_thread.items(), key=lambda kv: -kv[1])
        },
        "method": "py-spy samples (nonblocking, idle excluded) weighting each thread's CPU",
    }
