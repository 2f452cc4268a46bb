"""The team servers' addresses: which host and port a scope's address names, whether it
listens, and the secrets its `{NAME}` placeholders stand for (`state.credentials_file`)."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import string
import time
from pathlib import Path
from urllib.parse import urlsplit

from data_contracts.scoping import Scope

LOOPBACK = ("127.0.0.1", "localhost")


class TeamError(RuntimeError):
    """The team profile cannot start as the scope asks; the message says what and where."""


def ensure_credentials(scope: Scope) -> Path | None:
    """Write fresh secrets for every `{NAME}` of the state URLs that neither the credentials
    file nor the environment holds (file mode 0600); the file's path, None when not set."""
    import yaml

    st = scope.state
    if st.credentials_file is None:
        return None
    path = st.path("credentials_file").resolve()
    known = yaml.safe_load(path.read_text()) or {} if path.is_file() else {}
    wanted = set()
    for name in ("prediction_log_url", "mlflow_tracking_uri", "prefect_api_url", "dask_scheduler"):
        value = getattr(st, name)
        if value:
            wanted |= {f for _, f, _, _ in string.Formatter().parse(value) if f}
    fresh = {n: secrets.token_urlsafe(18) for n in sorted(wanted - {"workspace"}) if n not in known}
    fresh = {n: v for n, v in fresh.items() if n not in os.environ}
    if fresh or not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(yaml.safe_dump({**known, **fresh}))
    path.chmod(0o600)
    return path


def host_port(address: str, field: str) -> tuple[str, int]:
    """The loopback host and port of `state.<field>`; anything else cannot be started here."""
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.hostname not in LOOPBACK or parts.port is None:
        raise TeamError(f"state.{field} must be 127.0.0.1 with a port to start here: {address!r}")
    return parts.hostname, parts.port


def wait_port(host: str, port: int, timeout_s: float, what: str) -> None:
    """Return once host:port accepts a connection; TeamError naming `what` after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if port_open(host, port):
            return
        time.sleep(0.5)
    raise TeamError(f"{what} did not listen on {host}:{port} within {timeout_s:.0f} s")


def port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1.0):
        return True
    return False
