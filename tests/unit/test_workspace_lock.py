"""One cycle at a time on a workspace: a second holder refuses (or waits), a killed holder
leaves no stale lock, and the CLI refuses with exit 7 and one message."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from data_contracts.scoping import Scope
from tasks.workspace_lock import CYCLE_LOCK, WorkspaceBusy, cycle_lock, hold

REPO = Path(__file__).resolve().parents[2]

HOLDER = """
import sys, time
from pathlib import Path
from tasks.workspace_lock import hold
with hold(Path(sys.argv[1]), "voicecycle story"):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_second_holder_is_refused_naming_the_first(tmp_path: Path) -> None:
    path = tmp_path / "run" / CYCLE_LOCK
    with hold(path, "voicecycle run"):
        with pytest.raises(WorkspaceBusy) as refused:
            with hold(path, "voicecycle retrain"):
                pytest.fail("two holders at once")
    words = str(refused.value)
    assert words.startswith("voicecycle retrain refused: voicecycle run (pid ")
    assert str(path) in words and "rerun" in words
    with hold(path, "voicecycle retrain"):  # free once the first is done
        assert "voicecycle retrain" in path.read_text()


def test_a_waiting_holder_runs_after_the_first_never_beside_it(tmp_path: Path) -> None:
    path = tmp_path / "retrain.lock"
    order: list[str] = []
    with hold(path, "retrain (drift)", wait=True):
        second = threading.Thread(
            target=lambda: _hold_and_note(path, order), name="second-retrain", daemon=True
        )
        second.start()
        time.sleep(0.3)
        order.append("first done")
    second.join(10)
    assert order == ["first done", "second ran"]


def _hold_and_note(path: Path, order: list[str]) -> None:
    with hold(path, "retrain (by hand)", wait=True):
        order.append("second ran")


def test_a_holder_killed_with_sigkill_leaves_no_stale_lock(tmp_path: Path) -> None:
    path = tmp_path / CYCLE_LOCK
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(WorkspaceBusy, match=f"voicecycle story \\(pid {holder.pid}"):
            with hold(path, "voicecycle run"):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        if holder.stdout is not None:
            holder.stdout.close()
    with hold(path, "voicecycle run"):  # the kernel dropped the dead holder's lock
        pass


def test_the_cli_refuses_a_second_cycle_with_exit_7_and_one_message(tmp_path: Path) -> None:
    scope = Scope().with_workspace(tmp_path / "workspace")
    with cycle_lock(scope, "voicecycle story"):
        done = subprocess.run(
            [sys.executable, "-m", "flows.cli", "retrain", "--reason", "by hand"]
            + ["--workspace", str(tmp_path / "workspace")],
            cwd=REPO,
            text=True,
            capture_output=True,
            timeout=120,
        )
    assert done.returncode == 7, done.stderr[-2000:]
    assert "voicecycle retrain refused: voicecycle story (pid" in done.stderr
    assert "Traceback" not in done.stderr
    assert not scope.state.path("prefect_home").exists()  # refused before starting anything
