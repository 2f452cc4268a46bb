"""The local runtime: one workspace folder, a Prefect server on 127.0.0.1, and the environment
every process of the cycle shares. Entry points call `configure_environment` first; nothing
here runs at import.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from data_contracts.scoping import Scope


def prefect_api_url(scope: Scope) -> str:
    """The API address of the project's local Prefect server."""
    return f"http://127.0.0.1:{scope.state.prefect_port}/api"


def prefect_ui_url(scope: Scope) -> str:
    """The address of the Prefect UI."""
    return f"http://127.0.0.1:{scope.state.prefect_port}"


def configure_environment(scope: Scope, api: bool = True) -> None:
    """Point Prefect, MLflow and BentoML at the workspace (call before importing them)."""
    ws = scope.state.workspace.resolve()
    ws.mkdir(parents=True, exist_ok=True)
    prefect_home = scope.state.path("prefect_home").resolve()
    prefect_home.mkdir(parents=True, exist_ok=True)
    os.environ["PREFECT_HOME"] = str(prefect_home)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    if api:
        os.environ["PREFECT_API_URL"] = prefect_api_url(scope)
    bentoml_home = scope.state.path("bentoml_home").resolve()
    bentoml_home.mkdir(parents=True, exist_ok=True)
    os.environ["BENTOML_HOME"] = str(bentoml_home)
    os.environ["BENTOML_DO_NOT_TRACK"] = "true"
    os.environ["MLFLOW_TRACKING_URI"] = scope.state.url("mlflow_tracking_uri")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    (ws / "logs").mkdir(exist_ok=True)


def _healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (loopback only)
            return resp.status == 200
    except OSError:
        return False


def server_healthy(scope: Scope) -> bool:
    """True when the project's Prefect server answers its health check."""
    return _healthy(prefect_api_url(scope) + "/health")


def start_server(scope: Scope, timeout_s: float = 120.0) -> str:
    """Start the Prefect server in the background (or reuse a running one); return the UI URL."""
    configure_environment(scope)
    if server_healthy(scope):
        return prefect_ui_url(scope)
    ws = scope.state.workspace.resolve()
    log = open(ws / "logs" / "prefect-server.log", "ab")  # noqa: SIM115 (handed to the child)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "prefect",
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(scope.state.prefect_port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env=os.environ.copy(),
    )
    (ws / "prefect-server.pid").write_text(str(proc.pid))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server_healthy(scope):
            return prefect_ui_url(scope)
        if proc.poll() is not None:
            raise RuntimeError(
                f"the Prefect server exited with code {proc.returncode}; "
                f"see {ws / 'logs' / 'prefect-server.log'}"
            )
        time.sleep(1.0)
    raise RuntimeError(f"the Prefect server did not answer within {timeout_s:.0f} s")


def stop_pidfile(pidfile: Path, grace_s: float = 10.0) -> bool:
    """Stop the process group recorded in a pid file; True if something was stopped."""
    if not pidfile.is_file():
        return False
    pid = int(pidfile.read_text().strip())
    pidfile.unlink()
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.3)
    os.killpg(pid, signal.SIGKILL)
    return True


def stop_server(scope: Scope) -> bool:
    """Stop the Prefect server this workspace started."""
    return stop_pidfile(scope.state.workspace.resolve() / "prefect-server.pid")
