"""One cycle at a time on a workspace.

`voicecycle run`, `story` and `retrain` hold `<state.run_dir>/cycle.lock` while they work: a
second one on the same workspace refuses at once, naming the command that holds it
(`WorkspaceBusy`, exit code 7). The retrain flow holds `<state.run_dir>/retrain.lock` for its
whole run, wherever it runs (a worker, `--local`): two retrains on one workspace (drift's and
a person's) run one after the other, never interleaved.

The locks are `flock`s: the kernel drops one when its holder's process ends, `kill -9`
included, so no lock outlives its process and none needs cleaning up. The file keeps the last
holder's words, which a refusal quotes.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from data_contracts.scoping import Scope

CYCLE_LOCK = "cycle.lock"
RETRAIN_LOCK = "retrain.lock"


class WorkspaceBusy(RuntimeError):
    """Another command holds the workspace's cycle lock."""


@contextmanager
def hold(path: Path, holder: str, wait: bool = False) -> Iterator[None]:
    """Hold the lock file `path` while the block runs, recording `holder` in it. Busy:
    WorkspaceBusy at once, or (`wait`) block until its holder ends."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise WorkspaceBusy(
                f"{holder} refused: {held_by(path) or 'another command'} holds {path}; "
                "wait for it to finish (or stop it) and rerun"
            ) from None
        os.ftruncate(fd, 0)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        os.write(fd, f"{holder} (pid {os.getpid()}, since {stamp})".encode())
        yield
    finally:
        os.close(fd)  # closing the file releases the lock


def held_by(path: Path) -> str:
    """The words of the lock's last holder ('' when none wrote any)."""
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def cycle_lock(scope: Scope, command: str) -> AbstractContextManager[None]:
    """The workspace's cycle lock for `command` (refuses when held)."""
    return hold(scope.state.path("run_dir") / CYCLE_LOCK, command)


def retrain_lock(scope: Scope, reason: str) -> AbstractContextManager[None]:
    """The workspace's retrain lock (waits while another retrain holds it)."""
    return hold(scope.state.path("run_dir") / RETRAIN_LOCK, f"retrain ({reason})", wait=True)
