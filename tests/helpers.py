"""Small helpers the command-driving tests share."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def last_json(text: str) -> Any:
    """The JSON document a command printed last (flows may log and draw progress before)."""
    lines = text.splitlines()
    for start in reversed([i for i, line in enumerate(lines) if line in ("{", "[")]):
        try:
            return json.loads("\n".join(lines[start:]))
        except json.JSONDecodeError:
            continue
    raise AssertionError(f"no JSON at the end of: {text[-2000:]}")


def processes_over(path: Path) -> list[str]:
    """The command lines of running processes that name `path` (a workspace's folder): what a
    stop left behind."""
    import psutil

    needle, found = str(path.resolve()), []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if needle in cmdline:
            found.append(f"{proc.pid}: {cmdline}")
    return found


def postgres_folder(prefix: str) -> Path:
    """A fresh folder for a PostgreSQL cluster: reachable by the `postgres` user, which runs
    it when the tests run as root. Skips, naming what is missing, where PostgreSQL is not
    installed (never on these machines or in CI: the setup installs it)."""
    import tempfile

    import pytest

    from deployments.addresses import TeamError
    from deployments.postgres import postgres_bindir

    try:
        postgres_bindir()
    except TeamError as exc:
        pytest.skip(str(exc))
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o711)
    return root
