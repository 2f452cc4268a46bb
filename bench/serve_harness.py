"""The serving benchmark's harness: the server under test and the load on it.

`bentoml serve` in a scratch BentoML home on 127.0.0.1 (started with the service's template
arguments, stopped with its whole process tree), a lean closed-loop HTTP load generator, and
what the server reports about the load (batch sizes, its own latencies, CPU). bench/serve.py
runs the benchmark with these.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 180.0
REQUEST_TIMEOUT_S = 60.0

_IMPORT_SCRIPT = """
import json, sys
from pathlib import Path
from tasks.packaging import import_recognizer
tag = import_recognizer(Path(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3]), {"bench": "serve"})
print(tag)
"""


# -- the server ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _child_env(extra: dict[str, str], pythonpath: Sequence[Path] = ()) -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(p) for p in (*pythonpath, REPO)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    return {**env, "PYTHONPATH": os.pathsep.join(paths), "BENTOML_DO_NOT_TRACK": "True", **extra}


def import_model(recognizer_dir: Path, name: str, metadata: dict[str, Any], home: Path) -> str:
    """Import into the BentoML store at `home` (a child process: BentoML fixes its home once)."""
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_SCRIPT, str(recognizer_dir), name, json.dumps(metadata)],
        cwd=REPO,
        env=_child_env({"BENTOML_HOME": str(home)}),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        raise RuntimeError(f"importing the benchmark model failed:\n{done.stderr[-3000:]}")
    return done.stdout.strip().splitlines()[-1]


def _process_tree(pid: int) -> list[Any]:
    import psutil

    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def stop_server(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL what is left of the tree. The workers are collected first: circus
    puts each in a session of its own, so signalling the serve process alone can orphan them."""
    import psutil

    tree = _process_tree(process.pid)
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
    _, alive = psutil.wait_procs(tree, timeout=5)
    for proc in reversed(alive):
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=15)
    if process.poll() is None:
        process.kill()
        process.wait(timeout=15)


def start_server(
    home: Path,
    workspace: Path,
    scope_file: Path,
    tag: str,
    log: Path,
    service: str | None = None,
    pythonpath: Sequence[Path] = (),
) -> tuple[subprocess.Popen[bytes], str]:
    """`bentoml serve` on 127.0.0.1:<free port>, ready; (process, base URL)."""
    import httpx

    from deployments.arguments import SERVICE_IMPORT, serve_arguments, serve_command

    port = free_port()
    command = serve_command("127.0.0.1", port, serve_arguments(scope_file, workspace, tag))
    if service:
        command = [service if part == SERVICE_IMPORT else part for part in command]
    child_env = _child_env({"BENTOML_HOME": str(home)}, pythonpath)
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=child_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    stop_server(process)
    tail = log.read_text(errors="replace")[-3000:]
    raise RuntimeError(f"bentoml serve did not become ready (exit {process.returncode}):\n{tail}")


# -- the load ------------------------------------------------------------------------------------


def multipart_body(wav: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    head = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="client"\r\n\r\n'
        '{"app": "bench-serve"}\r\n'
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="audio"; filename="q.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()
    return (
        head + wav + f"\r\n--{boundary}--\r\n".encode(),
        f"multipart/form-data; boundary={boundary}",
    )


def run_load(
    url: str, bodies: Sequence[tuple[bytes, str]], concurrency: int, requests: int
) -> dict[str, Any]:
    """`requests` POSTs from `concurrency` threads; latencies (ms), statuses, wall time, ids.

    A lean client (stdlib `http.client`, pre-encoded bodies: about 0.5 ms of CPU per
    request, a quarter of httpx's), because it shares the cores with the server it measures.
    Each request comes on a connection of its own, as from separate phones: with
    `serving.workers` processes taking connections from one socket, a few long-lived
    connections would pin the load to whichever workers accepted them (8 keep-alive clients
    measured 134 to 197 req/s from one run to the next, depending on the split).
    """
    import http.client
    from urllib.parse import urlsplit

    target = urlsplit(url)
    lock = threading.Lock()
    next_index = iter(range(requests))
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    request_ids: list[str] = []

    def worker() -> None:
        while True:
            with lock:
                i = next(next_index, None)
            if i is None:
                return
            body, content_type = bodies[i % len(bodies)]
            started = time.perf_counter()
            payload = b""
            connection = http.client.HTTPConnection(
                target.hostname or "127.0.0.1", target.port, timeout=REQUEST_TIMEOUT_S
            )
            try:
                connection.request(
                    "POST",
                    "/transcribe",
                    body=body,
                    headers={"Content-Type": content_type, "Connection": "close"},
                )
                response = connection.getresponse()
                payload = response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                status = 599
            finally:
                connection.close()
            elapsed = (time.perf_counter() - started) * 1000.0
            with lock:
                statuses[status] += 1
                if status == 200:
                    latencies.append(elapsed)
                    request_ids.append(json.loads(payload)["request_id"])

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    return {"latencies": latencies, "statuses": statuses, "wall_s": wall, "ids": request_ids}


def worker_batching(url: str, workers: int, tries_per_worker: int = 8) -> dict[int, Any]:
    """Each worker's batching stats (GET /metadata, `batching`), by process id. A request
    reaches whichever worker accepts its connection, so ask until every worker has answered
    (or the tries run out)."""
    import httpx

    seen: dict[int, Any] = {}
    for _ in range(max(1, workers) * tries_per_worker):
        with httpx.Client(timeout=10) as client:  # a new connection: maybe another worker
            batching = client.get(f"{url}/metadata").json().get("batching", {})
        seen[int(batching.get("pid", 0))] = batching
        if len(seen) >= workers:
            break
    return seen


def batch_sizes(stats: dict[int, Any]) -> Counter[int]:
    """The batch sizes formed, summed over the workers' stats."""
    total: Counter[int] = Counter()
    for batching in stats.values():
        sizes = batching.get("observed_batch_sizes", {})
        total.update({int(k): int(v) for k, v in sizes.items()})
    return total


def model_cpu_ms(stats: dict[int, Any]) -> float:
    """CPU the workers' model threads spent in `transcribe`, summed over the workers."""
    return float(sum(float(b.get("model_cpu_ms", 0.0)) for b in stats.values()))


def server_latencies(workspace: Path, ids: set[str]) -> list[float]:
    from data_contracts.prediction_store import PredictionStore

    store = PredictionStore(f"sqlite:///{workspace.resolve() / 'predictions.db'}")
    try:
        frame = store.read()
    finally:
        store.close()
    return frame.loc[frame["request_id"].isin(ids), "latency_ms"].astype(float).tolist()


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and its children."""
    import psutil

    total = 0.0
    for proc in _process_tree(pid):
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


# -- the profile ---------------------------------------------------------------------------------

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
    for proc in _process_tree(pid):
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
