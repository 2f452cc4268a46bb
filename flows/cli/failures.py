"""How `voicecycle` ends when something expected goes wrong: one message, no traceback, and a
documented exit code (`--debug`, a global option, shows the traceback as well).

Exit codes (also in `voicecycle --help` and the README):
  0  done
  1  the work ran and the answer is no (ingestion rejected the data: too many rows
     quarantined; a simulated request failed; nothing to roll back to)
  2  invalid usage or input (an unknown option, an invalid scope, an unreadable manifest)
  3  a server could not be reached (the Prefect API, the service, MLflow)
  4  nothing to work on (no champion in the registry)
  5  a port the scope names is taken by another program (or another workspace's server)
  6  the disk is full (nothing published)
  7  the workspace is busy: another run, story or retrain holds it (tasks/workspace_lock.py)
  70 an unexpected error (a bug: the traceback is printed)

Expected failures are recognised by the name of their class (or a base class), so this module
imports nothing heavy and `--help` stays quick. Prefect logs a failing task or flow with its
traceback; for an expected failure the log line stays and the traceback goes.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

EXIT_CODES_HELP = (
    "Exit codes: 0 done; 1 the work ran and the answer is no (data rejected); 2 invalid usage, "
    "scope or input; 3 a server could not be reached; 4 nothing to work on (no champion); "
    "5 a port is taken by another program; 6 the disk is full (nothing published); "
    "7 the workspace is busy (another run, story or retrain holds it); "
    "70 unexpected error (traceback printed). --debug shows the traceback of expected failures "
    "too."
)
UNEXPECTED = 70

# class name -> exit code; matched against the exception's class and its bases
EXPECTED: dict[str, int] = {
    "IngestionRejected": 1,
    "UnusableModel": 1,  # a registered model whose files are corrupt or missing
    "ScopeError": 2,
    "ManifestError": 2,
    "NamesFileError": 2,
    "ServerUnreachable": 3,
    "ConnectError": 3,  # httpx
    "ConnectTimeout": 3,  # httpx, requests
    "ConnectionError": 3,  # requests, and the builtin (refused, reset)
    "NoChampion": 4,
    "NothingToScore": 1,  # voicecycle evaluate: every row quarantined
    "PortInUse": 5,
    "ForeignPrefectServer": 5,  # deployments.local: the port serves another workspace
    "WorkspaceBusy": 7,
}
WHAT = {
    1: "rejected",
    2: "invalid input",
    3: "server unreachable",
    4: "nothing to work on",
    5: "port in use",
    6: "disk full",
    7: "workspace busy",
}
DISK_FULL = 6
# a write refused for lack of room: no space, a quota, a file-size limit (errno values)
_NO_ROOM = {28, 122, 27}  # ENOSPC, EDQUOT, EFBIG


class PortInUse(RuntimeError):
    """A port the scope names is bound by a program that is not the one we would start."""


class ServerUnreachable(RuntimeError):
    """A server the command needs does not answer."""


def expected_exit(exc: BaseException) -> int | None:
    """The exit code of an expected failure (None: unexpected)."""
    if isinstance(exc, OSError) and exc.errno in _NO_ROOM:
        return DISK_FULL
    for cls in type(exc).__mro__:
        if cls.__name__ in EXPECTED:
            return EXPECTED[cls.__name__]
    return None


def describe(exc: BaseException, code: int) -> str:
    """The one message an expected failure prints."""
    text = str(exc).strip() or type(exc).__name__
    if code == DISK_FULL:
        text += "; nothing was published: free some space (or move state.workspace) and rerun"
    return f"{text}\n(exit {code}: {WHAT.get(code, 'failed')}; --debug shows the traceback)"


def quiet_expected_tracebacks() -> None:
    """Log records of expected failures keep their message and lose their traceback (Prefect
    logs a failed task or flow run with `exc_info`); other records are untouched."""
    make = logging.getLogRecordFactory()
    if getattr(make, "voicecycle_quiet", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and expected_exit(exc) is not None:
            record.exc_info, record.exc_text = None, None
        return record

    factory.voicecycle_quiet = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def port_in_use(host: str, port: int) -> bool:
    """Whether something listens on host:port."""
    with socket.socket() as probe:
        probe.settimeout(1.0)
        return probe.connect_ex((host, port)) == 0
