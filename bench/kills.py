"""The Prefect server SIGKILLed while `voicecycle ingest` runs on it, as an operator's machine
would see it: what the command says, what is published, and whether a rerun completes.

Only the CLI and the workspace's folders are used (a phone or an operator has nothing else).
"""

from __future__ import annotations

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


def _cli(scope_file: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "flows.cli", *args, "--scope", str(scope_file)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _partial_versions(datasets: Path) -> list[str]:
    """Published version folders that lack a file a whole version has."""
    if not datasets.is_dir():
        return []
    return [
        d.name
        for d in datasets.iterdir()
        if not d.name.startswith(".") and not all((d / f).is_file() for f in VERSION_FILES)
    ]


def prefect_server_kill(root: Path, timeout_s: float = 900) -> dict[str, Any]:
    """Start the local Prefect server, run ingest on it, SIGKILL the server once ingestion is
    probing clips, then restart it and ingest again."""
    scope = _tiny_scope(root / "ws")
    scope_file = root / "scope.yaml"
    scope_file.write_text(yaml.safe_dump(scope.model_dump(mode="json"), sort_keys=False))
    datasets = scope.state.path("datasets_dir")
    started = _cli(scope_file, "server", "start")
    started.communicate(timeout=300)
    ingest = _cli(scope_file, "ingest")
    deadline = time.monotonic() + timeout_s
    while not list(datasets.glob(".staging-*")) and ingest.poll() is None:
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    pid = int((scope.state.path("run_dir") / "prefect-server.pid").read_text())
    server = psutil.Process(pid)
    tree = [server, *server.children(recursive=True)]
    for proc in tree:
        proc.kill()
    psutil.wait_procs(tree, timeout=15)
    killed_at = time.monotonic()
    out, _ = ingest.communicate(timeout=timeout_s)
    after_kill = {
        "exit": ingest.returncode,
        "seconds_to_exit": round(time.monotonic() - killed_at, 1),
        "last_line": (out.strip().splitlines() or [""])[-1][:200],
        "versions": sorted(d.name for d in datasets.iterdir() if not d.name.startswith(".")),
        "partial": _partial_versions(datasets),
        "staging_left": len(list(datasets.glob(".staging-*"))),
    }
    restarted = _cli(scope_file, "server", "start")
    restarted.communicate(timeout=300)
    rerun = _cli(scope_file, "ingest")
    rerun_out, _ = rerun.communicate(timeout=timeout_s)
    stop = _cli(scope_file, "server", "stop")
    stop.communicate(timeout=120)
    return {
        "after_kill": after_kill,
        "rerun_exit": rerun.returncode,
        "rerun_last_line": (rerun_out.strip().splitlines() or [""])[-1][:200],
        "partial_versions": len(_partial_versions(datasets)),
        "ok": rerun.returncode == 0 and not _partial_versions(datasets),
    }
