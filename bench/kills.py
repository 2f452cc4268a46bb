"""Faults an operator's machine meets, driven through the CLI: the Prefect server SIGKILLed
while `voicecycle ingest` runs on it (what the command says, what is published, whether a
rerun completes), and a full disk under the workspace during ingest and augment.

Only the CLI and the workspace's folders are used (a phone or an operator has nothing else).
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import yaml

from data_contracts.scoping import DataSource, RuntimeScope, Scope, SyntheticCorpus

REPO = Path(__file__).resolve().parents[1]
VERSION_FILES = ("manifest.csv", "version.json")  # what a whole dataset version holds


def _tiny_scope(workspace: Path) -> Scope:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    source = DataSource(
        kind="synthetic",
        name="synthetic",
        synthetic=SyntheticCorpus(n_utterances=24, seed=5, n_voices=6),
    )
    scope = Scope(sources=[source], runtime=RuntimeScope(task_runner="threads"))
    scope = scope.with_workspace(workspace)
    return scope.model_copy(update={"state": scope.state.model_copy(update={"prefect_port": port})})


def _cli(scope_file: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "flows.cli", *args, "--scope", str(scope_file)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )


def _versions(datasets: Path) -> list[str]:
    """Published version folders (none where ingestion never made the folder)."""
    if not datasets.is_dir():
        return []
    return sorted(d.name for d in datasets.iterdir() if not d.name.startswith("."))


def _partial_versions(datasets: Path) -> list[str]:
    """Published version folders that lack a file a whole version has."""
    if not datasets.is_dir():
        return []
    return [
        d.name
        for d in datasets.iterdir()
        if not d.name.startswith(".") and not all((d / f).is_file() for f in VERSION_FILES)
    ]


def prefect_server_kill(
    root: Path, timeout_s: float = 900, client_retries: int | None = None
) -> dict[str, Any]:
    """Start the local Prefect server, run ingest on it, SIGKILL the server once ingestion is
    probing clips, then restart it (`server start`) and ingest again. `client_retries`: the
    Prefect client's retries of the killed run (PREFECT_CLIENT_MAX_RETRIES; None: Prefect's
    default, which takes minutes to give up)."""
    scope = _tiny_scope(root / "ws")
    scope_file = root / "scope.yaml"
    scope_file.write_text(yaml.safe_dump(scope.model_dump(mode="json"), sort_keys=False))
    _cli(scope_file, "server", "start").communicate(timeout=300)
    try:
        return kill_prefect_during_ingest(
            scope, scope_file, ("server", "start"), timeout_s, client_retries
        )
    finally:
        _cli(scope_file, "server", "stop").communicate(timeout=120)


def _kill_tree(pid: int, children_first: bool = False) -> int:
    """SIGKILL a process and all its descendants; how many there were."""
    top = psutil.Process(pid)
    tree = [top, *top.children(recursive=True)]
    for proc in reversed(tree) if children_first else tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(tree, timeout=15)
    return len(tree)


def kill_prefect_during_ingest(
    scope: Scope,
    scope_file: Path,
    restart: tuple[str, ...],
    timeout_s: float = 900,
    client_retries: int | None = None,
) -> dict[str, Any]:
    """On a running Prefect server (local or the team's): run ingest, SIGKILL the server once
    ingestion is probing clips, bring it back with the `restart` command (`server start`,
    `team up`), read what its sweep left, and ingest again."""
    from deployments.local import prefect_api_url

    datasets = scope.state.path("datasets_dir")
    before = set(_versions(datasets))
    known = {r["id"] for r in flow_runs(prefect_api_url(scope))}  # runs of earlier work
    retries = {} if client_retries is None else {"PREFECT_CLIENT_MAX_RETRIES": str(client_retries)}
    ingest = _cli(scope_file, "ingest", env=retries)
    deadline = time.monotonic() + timeout_s
    while not list(datasets.glob(".staging-*")) and ingest.poll() is None:
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    ended_before_kill = ingest.poll() is not None
    _kill_tree(int((scope.state.path("run_dir") / "prefect-server.pid").read_text()))
    killed_at = time.monotonic()
    out, _ = ingest.communicate(timeout=timeout_s)
    after_kill = {
        "exit": ingest.returncode,
        "seconds_to_exit": round(time.monotonic() - killed_at, 1),
        "last_line": (out.strip().splitlines() or [""])[-1][:200],
        # the kill must land mid-work: where ingest had already ended, say how
        "ended_before_kill": ended_before_kill,
        "output_tail": out.strip().splitlines()[-15:] if ended_before_kill else [],
        "versions": sorted(set(_versions(datasets)) - before),  # what the killed run published
        "partial": _partial_versions(datasets),
        "staging_left": len(list(datasets.glob(".staging-*"))),
    }
    restart_out, _ = _cli(scope_file, *restart).communicate(timeout=300)
    after_restart = [  # before the rerun: what the sweep left of the killed run
        r for r in flow_runs(prefect_api_url(scope)) if r["id"] not in known
    ]
    rerun = _cli(scope_file, "ingest")
    rerun_out, _ = rerun.communicate(timeout=timeout_s)
    return {
        "after_kill": after_kill,
        "rerun_exit": rerun.returncode,
        "rerun_version": next(iter(re.findall(r"dataset version (ds-[0-9a-f]+)", rerun_out)), None),
        "partial_versions": len(_partial_versions(datasets)),
        # the run the kill left Running, ended Crashed by the sweep at the restart
        "open_runs_after_restart": [r for r in after_restart if r["state"] in OPEN_STATES],
        "crashed_after_restart": [r for r in after_restart if r["state"] == "CRASHED"],
        "sweep_said": [
            line for line in restart_out.splitlines() if "Crashed" in line or "sweep" in line
        ],  # fmt: skip
        "ok": rerun.returncode == 0
        and not _partial_versions(datasets)
        and not any(r["state"] in OPEN_STATES for r in after_restart),
    }


OPEN_STATES = ("RUNNING", "PENDING")


def flow_runs(api: str) -> list[dict[str, Any]]:
    """Every flow run the Prefect server at `api` knows: name, flow, state type, message."""
    import httpx

    found = httpx.post(f"{api}/flow_runs/filter", json={"limit": 200}, timeout=30)
    found.raise_for_status()
    return [
        {
            "id": r["id"],
            "name": r["name"],
            "state": (r.get("state") or {}).get("type"),
            "message": ((r.get("state") or {}).get("message") or "")[:200],
            "parent_task_run_id": r.get("parent_task_run_id"),
            "infrastructure_pid": r.get("infrastructure_pid"),
        }
        for r in found.json()
    ]


# -- a full disk -----------------------------------------------------------------------------

FILE_LIMIT = 40_000  # bytes: below one clip, above the scope and the CLI's small files


def mount_small_disk(disk: Path, size: str = "64m") -> bool:
    """A tmpfs of `size` at `disk` (as root); False where mounting is not allowed."""
    disk.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


def unmount(disk: Path) -> None:
    subprocess.run(["umount", "-l", str(disk)], capture_output=True, check=False)


def fill(disk: Path, leave: int = 300_000) -> None:
    """A ballast file that leaves `leave` bytes free on the filesystem of `disk`."""
    stat = os.statvfs(disk)
    remaining = stat.f_bavail * stat.f_frsize - leave
    chunk = b"\0" * (1 << 20)
    with (disk / "ballast").open("wb") as out:
        while remaining > 0:
            out.write(chunk[: min(len(chunk), remaining)])
            remaining -= len(chunk)


def _file_size_limited() -> None:
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a refused write is EFBIG, not a signal
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT, FILE_LIMIT))


def _hashes(folder: Path) -> dict[str, str]:
    import hashlib

    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def disk_full(scope_file: Path, scope: Scope, disk: Path | None) -> dict[str, Any]:
    """Ingest once with room, then ingest and augment again with the workspace's disk full
    (`disk`: a mounted small filesystem to fill; None: each command under RLIMIT_FSIZE)."""

    def run(*args: str, limit: Any = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "flows.cli", *args, "--scope", str(scope_file)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
            preexec_fn=limit,
            check=False,
        )

    first = run("ingest")
    if first.returncode != 0:
        raise RuntimeError(f"the first ingest (with room) failed:\n{first.stderr[-3000:]}")
    datasets, augmented_dir = scope.state.path("datasets_dir"), scope.state.path("augmented_dir")
    (stored,) = [p for p in datasets.iterdir() if p.name.startswith("ds-")]
    before = _hashes(stored)
    if disk is not None:
        fill(disk)
    limit = None if disk is not None else _file_size_limited
    # the same sources again: the corpus is reused, the clips are probed into a new staging
    runs = {
        "ingest": run("ingest", limit=limit),
        "augment": run("augment", "--dataset-version", stored.name, limit=limit),
    }
    extra = [p.name for p in datasets.iterdir() if p != stored]
    if augmented_dir.is_dir():
        extra += [p.name for p in augmented_dir.iterdir()]
    return {
        "how": "tmpfs" if disk is not None else f"RLIMIT_FSIZE={FILE_LIMIT}",
        "exits": {name: done.returncode for name, done in runs.items()},
        "stderr": {name: done.stderr[-2000:] for name, done in runs.items()},
        "left_behind": extra,  # any version or staging folder the full-disk runs left
        "stored_unchanged": _hashes(stored) == before,
        "partial_versions": len(extra),
    }


def disk_full_with_local_server(root: Path) -> dict[str, Any]:
    """`disk_full` on a small tmpfs (RLIMIT_FSIZE where mounting is not allowed), the local
    Prefect server's home and logs kept off that disk."""
    disk = root / "disk"
    mounted = mount_small_disk(disk)
    try:
        scope = _tiny_scope((disk if mounted else root) / "ws")
        state = scope.state.model_copy(
            update={"prefect_home": root / "prefect-home", "run_dir": root / "run"}
        )
        scope = scope.model_copy(update={"state": state})
        scope_file = root / "scope.yaml"
        scope_file.write_text(yaml.safe_dump(scope.model_dump(mode="json"), sort_keys=False))
        try:
            return disk_full(scope_file, scope, disk if mounted else None)
        finally:
            _cli(scope_file, "server", "stop").communicate(timeout=120)
    finally:
        if mounted:
            unmount(disk)


# -- the Prefect worker during a retrain -----------------------------------------------------


def _training_scope(workspace: Path) -> Scope:
    """The tiny scope with a training budget of seconds that checkpoints every 2 steps."""
    base = _tiny_scope(workspace)
    training = base.training.model_copy(
        update={"profile": "smoke", "max_minutes": 0.3, "eval_every_steps": 2,
                "max_epochs": 400, "threads": 1, "general_lexicon_words": 2000}
    )  # fmt: skip
    return base.model_copy(update={"training": training})


def registry_state(scope: Scope) -> dict[str, Any]:
    """The champion, the registered versions without their metrics, the runs left RUNNING."""
    import mlflow

    mlflow.set_tracking_uri(scope.state.url("mlflow_tracking_uri"))
    client = mlflow.MlflowClient()
    name = scope.registry.model_name
    versions = client.search_model_versions(f"name = '{name}'")
    unmeasured = [
        v.version
        for v in versions
        if not any(k.startswith("wer") for k in client.get_run(v.run_id).data.metrics)
    ]
    try:
        champion: str | None = client.get_model_version_by_alias(name, "champion").version
    except mlflow.exceptions.MlflowException:
        champion = None
    experiment = client.get_experiment_by_name(scope.registry.experiment)
    running = (
        [r.info.run_id for r in client.search_runs(
            [experiment.experiment_id], filter_string="attributes.status = 'RUNNING'")]
        if experiment is not None else []
    )  # fmt: skip
    return {"champion": champion, "versions": sorted(v.version for v in versions),
            "versions_without_metrics": unmeasured, "mlflow_running": running}  # fmt: skip


def worker_kill_during_retrain(root: Path, timeout_s: float = 900) -> dict[str, Any]:
    """`voicecycle retrain` on the local worker; SIGKILL the worker and its flow-run process
    once training has written a checkpoint; `server start` (its sweep), then a manual
    `voicecycle retrain --wait` again."""
    scope = _training_scope(root / "ws")
    scope_file = root / "scope.yaml"
    scope_file.write_text(yaml.safe_dump(scope.model_dump(mode="json"), sort_keys=False))
    try:
        _cli(scope_file, "server", "start").communicate(timeout=300)
        return kill_worker_during_retrain(
            scope, scope_file, ("server", "start"), ["prefect-worker"], timeout_s
        )
    finally:
        _cli(scope_file, "server", "stop").communicate(timeout=120)


def kill_worker_during_retrain(
    scope: Scope,
    scope_file: Path,
    restart: tuple[str, ...],
    workers: list[str],
    timeout_s: float = 900,
) -> dict[str, Any]:
    """On a running Prefect server: trigger `voicecycle retrain`; once training has written a
    checkpoint, SIGKILL the worker (of the pid-file names `workers`) whose flow-run process
    trains, with that process; `restart` (`server start`, `team up`: its sweep), then a
    manual `voicecycle retrain --wait` again."""
    from deployments.local import prefect_api_url

    api = prefect_api_url(scope)
    runs_dir, run_dir = scope.state.path("runs_dir"), scope.state.path("run_dir")
    checkpoints = set(runs_dir.glob("*/last.pt"))
    before = registry_state(scope)
    known = {r["id"] for r in flow_runs(api)}  # runs of earlier work
    trigger_out, _ = _cli(scope_file, "retrain", "--reason", "fault: worker kill"
                          ).communicate(timeout=300)  # fmt: skip
    deadline = time.monotonic() + timeout_s
    while set(runs_dir.glob("*/last.pt")) <= checkpoints and time.monotonic() < deadline:
        time.sleep(0.2)
    checkpointed = bool(set(runs_dir.glob("*/last.pt")) - checkpoints)
    pids = [int((run_dir / f"{name}.pid").read_text()) for name in workers]
    busy = [pid for pid in pids if psutil.Process(pid).children()] or pids[:1]
    killed = {"worker_pid": busy[0], "processes_killed": _kill_tree(busy[0], children_first=True),
              "killed_mid_training": checkpointed}  # fmt: skip
    swept, _ = _cli(scope_file, *restart).communicate(timeout=300)
    after_kill = [r for r in flow_runs(api) if r["id"] not in known]
    registry_after_kill = registry_state(scope)
    rerun = _cli(scope_file, "retrain", "--reason", "rerun after a worker kill", "--wait")
    rerun_out, _ = rerun.communicate(timeout=timeout_s)
    registry_after_rerun = registry_state(scope)
    final_runs = flow_runs(api)
    killed_runs = [r for r in after_kill if r["state"] == "CRASHED"]
    outcome = {
        **killed,
        "triggered": trigger_out.strip().splitlines()[-1:],
        "open_runs_after_restart": [r for r in after_kill if r["state"] in OPEN_STATES],
        "crashed_runs": [{k: r[k] for k in ("name", "message")} for r in killed_runs],
        "sweep_said": [line for line in swept.splitlines() if "marked Crashed" in line],
        "champion_before": before["champion"],
        "registry_after_kill": registry_after_kill,
        "rerun_exit": rerun.returncode,
        "rerun_said": rerun_out.strip().splitlines()[-1:],
        "registry_after_rerun": registry_after_rerun,
        "open_runs_at_end": [r for r in final_runs if r["state"] in OPEN_STATES],
        "partial_versions": len(_partial_versions(scope.state.path("datasets_dir"))),
    }
    outcome["ok"] = bool(
        checkpointed
        and killed_runs
        and not outcome["open_runs_after_restart"]
        and registry_after_kill["champion"] == before["champion"]
        and registry_after_kill["versions"] == before["versions"]
        and not registry_after_rerun["versions_without_metrics"]
        and not registry_after_rerun["mlflow_running"]
        and rerun.returncode == 0
        and not outcome["open_runs_at_end"]
        and not outcome["partial_versions"]
    )
    return outcome
