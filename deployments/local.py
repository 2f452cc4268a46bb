"""The local runtime: the processes of the cycle on one machine (a Prefect server on
127.0.0.1, a process worker, `bentoml serve`), started in the background or reused, and
stopped again. Pid files and logs live in `state.run_dir`; the admin token of the service in
`state.admin_token_file`. Entry points call `configure_environment` first; nothing here runs
at import.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from data_contracts.scoping import Scope

REPO_ROOT = Path(__file__).resolve().parents[1]
WORK_POOL = "voicecycle-local"


def prefect_api_url(scope: Scope) -> str:
    """The Prefect API: the scope's `state.prefect_api_url`, else the local server's."""
    given = scope.state.address("prefect_api_url")
    return given.rstrip("/") if given else f"http://127.0.0.1:{scope.state.prefect_port}/api"


def prefect_ui_url(scope: Scope) -> str:
    """The address of the Prefect UI."""
    return prefect_api_url(scope).removesuffix("/api")


def configure_environment(scope: Scope, api: bool = True) -> None:
    """Point Prefect, MLflow and BentoML at the workspace (call before importing them)."""
    scope.state.workspace.resolve().mkdir(parents=True, exist_ok=True)
    prefect_home = scope.state.path("prefect_home").resolve()
    prefect_home.mkdir(parents=True, exist_ok=True)
    os.environ["PREFECT_HOME"] = str(prefect_home)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
    if api:
        os.environ["PREFECT_API_URL"] = prefect_api_url(scope)
    bentoml_home = scope.state.path("bentoml_home").resolve()
    bentoml_home.mkdir(parents=True, exist_ok=True)
    os.environ["BENTOML_HOME"] = str(bentoml_home)
    os.environ["BENTOML_DO_NOT_TRACK"] = "true"
    os.environ["MLFLOW_TRACKING_URI"] = scope.state.url("mlflow_tracking_uri")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    scope.state.path("run_dir").resolve().mkdir(parents=True, exist_ok=True)


def _run_file(scope: Scope, name: str) -> Path:
    """A pid file or log of the local servers: `state.run_dir/<name>`."""
    return scope.state.path("run_dir").resolve() / name


def _healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (loopback only)
            return bool(resp.status == 200)
    except OSError:
        return False


def server_healthy(scope: Scope) -> bool:
    """True when the project's Prefect server answers its health check."""
    return _healthy(prefect_api_url(scope) + "/health")


class ForeignPrefectServer(RuntimeError):
    """The scope's Prefect port answers for a server that keeps its database elsewhere (another
    workspace or clone started it): reusing it would record this workspace's runs there."""


def listener_home(port: int) -> Path | None:
    """The PREFECT_HOME of the process listening on 127.0.0.1:`port` (~/.prefect when it sets
    none); None when no process of ours listens there or it cannot be read."""
    import psutil

    try:
        sockets = psutil.net_connections(kind="tcp")
    except psutil.Error:
        return None
    pids = {
        s.pid
        for s in sockets
        if s.status == psutil.CONN_LISTEN and s.laddr and s.laddr.port == port and s.pid
    }
    for pid in pids:
        try:
            home = psutil.Process(pid).environ().get("PREFECT_HOME", "~/.prefect")
        except psutil.Error:
            continue
        return Path(home).expanduser().resolve()
    return None


def check_server_owner(scope: Scope) -> None:
    """Refuse to reuse the Prefect server on `state.prefect_port` when it keeps its database
    in another PREFECT_HOME than `state.prefect_home` (raises ForeignPrefectServer); a
    server the scope names by address (`state.prefect_api_url`) is nobody's local one."""
    if scope.state.prefect_api_url is not None:
        return
    home = listener_home(scope.state.prefect_port)
    ours = scope.state.path("prefect_home").resolve()
    if home is not None and home != ours:
        raise ForeignPrefectServer(
            f"port {scope.state.prefect_port} (state.prefect_port) is served by a Prefect "
            f"server that keeps its database in {home}, not this workspace's {ours}; stop it "
            "(`voicecycle server stop` in its workspace) or set state.prefect_port to a free "
            "port"
        )


def launch(
    scope: Scope,
    name: str,
    cmd: list[str],
    env: dict[str, str],
    ready: Callable[[], bool] | None,
    timeout_s: float,
) -> None:
    """Start a background process (own session; log and pid file in `state.run_dir`) and wait
    until `ready()` holds; a process that dies first is reported with its log's path."""
    log_path = _run_file(scope, f"{name}.log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )
    _run_file(scope, f"{name}.pid").write_text(str(proc.pid))
    if ready is None:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready():
            return
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with code {proc.returncode}; see {log_path}")
        time.sleep(1.0)
    raise RuntimeError(f"{name} was not ready within {timeout_s:.0f} s; see {log_path}")


def start_server(scope: Scope, timeout_s: float = 120.0) -> str:
    """Start the Prefect server in the background (or reuse the running one of this
    workspace's `state.prefect_home`); return the UI URL.

    Where the scope names a server (`state.prefect_api_url`) nothing is started: it must
    answer, or the error says which address did not."""
    configure_environment(scope)
    if scope.state.prefect_api_url is not None:
        if not server_healthy(scope):
            raise RuntimeError(
                f"the Prefect server at state.prefect_api_url ({prefect_api_url(scope)}) does "
                "not answer; start it (`voicecycle team up` for the team profile)"
            )
        sweep_orphaned_runs(scope)
        return prefect_ui_url(scope)
    if server_healthy(scope):
        check_server_owner(scope)
    else:
        cmd = [
            sys.executable,
            "-m",
            "prefect",
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(scope.state.prefect_port),
        ]
        launch(
            scope,
            "prefect-server",
            cmd,
            os.environ.copy(),
            lambda: server_healthy(scope),
            timeout_s,
        )
    sweep_orphaned_runs(scope)
    return prefect_ui_url(scope)


def sweep_orphaned_runs(scope: Scope) -> list[str]:
    """End Crashed the flow runs left Running or Pending by a process that is gone (a killed
    CLI or worker child, a server killed under them); says which on stderr. A sweep that
    cannot finish is a warning: the server itself is up."""
    from deployments.flow_runs import crash_orphans

    try:
        orphans = crash_orphans(prefect_api_url(scope), WORK_POOL)
    except Exception as exc:  # noqa: BLE001 (reported, the start goes on)
        print(f"warning: the sweep of orphaned flow runs failed: {exc}", file=sys.stderr)
        return []
    for orphan in orphans:
        print(f"flow run {orphan.name} ({orphan.run_id}) marked Crashed: {orphan.why}",
              file=sys.stderr)  # fmt: skip
    return [orphan.run_id for orphan in orphans]


def stop_pidfile(pidfile: Path, grace_s: float = 15.0) -> bool:
    """Stop the process recorded in a pid file and every process it started.

    `bentoml serve` starts its workers in sessions of their own, so signalling the process
    group is not enough: the whole tree is collected first, then terminated, then killed.
    """
    import psutil

    if not pidfile.is_file():
        return False
    pid = int(pidfile.read_text().strip())
    pidfile.unlink()
    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return False
    for proc in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(tree, timeout=grace_s)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    return True


def _stop(scope: Scope, name: str) -> bool:
    """Stop what `launch` started under `name`; also a pid file in the workspace root, where
    the runtime kept them before `state.run_dir` (servers started by an older checkout)."""
    stopped = stop_pidfile(_run_file(scope, f"{name}.pid"))
    return stop_pidfile(scope.state.workspace.resolve() / f"{name}.pid") or stopped


def stop_server(scope: Scope) -> bool:
    """Stop the Prefect server this workspace started."""
    return _stop(scope, "prefect-server")


def service_url(scope: Scope) -> str:
    """The base URL of the BentoML service."""
    return f"http://{scope.serving.host}:{scope.serving.port}"


def service_ready(scope: Scope) -> bool:
    """True when the service answers its readiness check (a model is loaded)."""
    return _healthy(service_url(scope) + "/readyz")


def admin_token_file(scope: Scope) -> Path:
    """`state.admin_token_file`, created with a fresh token (mode 0600) when missing."""
    path = scope.state.path("admin_token_file").resolve()
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(24))
    path.chmod(0o600)
    return path


def service_command(scope: Scope, scope_path: Path) -> list[str]:
    """`bentoml serve` on the scope's host and port, handed the scope file and the workspace
    as BentoML template arguments (the service reads its admin token from the scope's
    `state.admin_token_file`, created here when missing)."""
    from deployments.arguments import serve_arguments, serve_command

    admin_token_file(scope)
    arguments = serve_arguments(scope_path, scope.state.workspace, None)
    return serve_command(scope.serving.host, scope.serving.port, arguments)


def serve_foreground(scope: Scope, scope_path: Path) -> int:
    """Run `bentoml serve` attached to this terminal (Ctrl-C stops it); its exit code."""
    configure_environment(scope)
    return subprocess.call(service_command(scope, scope_path), cwd=REPO_ROOT, env=os.environ.copy())


def start_service(scope: Scope, scope_path: Path, timeout_s: float = 120.0) -> str:
    """Start `bentoml serve` in the background (or reuse a ready one); return its URL."""
    configure_environment(scope)
    if not service_ready(scope):
        launch(
            scope,
            "service",
            service_command(scope, scope_path),
            os.environ.copy(),
            lambda: service_ready(scope),
            timeout_s,
        )
    return service_url(scope)


def stop_service(scope: Scope) -> bool:
    """Stop the BentoML service this workspace started (workers included)."""
    return _stop(scope, "service")


def worker_running(scope: Scope) -> bool:
    """True when the worker this workspace started is alive."""
    import psutil

    pidfile = _run_file(scope, "prefect-worker.pid")
    if not pidfile.is_file():
        return False
    return bool(psutil.pid_exists(int(pidfile.read_text().strip())))


def start_worker(scope: Scope) -> None:
    """Start a process worker for the work pool in the background (or keep the running one)."""
    if not worker_running(scope):
        cmd = [
            sys.executable,
            "-m",
            "prefect",
            "worker",
            "start",
            "--pool",
            WORK_POOL,
            "--type",
            "process",
        ]
        launch(scope, "prefect-worker", cmd, os.environ.copy(), None, 0)


def stop_worker(scope: Scope) -> bool:
    """Stop the worker this workspace started."""
    return _stop(scope, "prefect-worker")


def evidently_ui_url(scope: Scope) -> str:
    """The address of the Evidently UI over `state.evidently_workspace`."""
    return f"http://127.0.0.1:{scope.state.evidently_port}"


def evidently_ui_command(workspace_dir: Path, port: int) -> list[str]:
    """`evidently ui` on 127.0.0.1:`port` over an Evidently workspace folder."""
    cli = str(Path(sys.executable).with_name("evidently"))
    host = ["--host", "127.0.0.1", "--port", str(port)]
    return [cli, "ui", "--workspace", str(workspace_dir.resolve()), *host]


def start_evidently_ui(scope: Scope, timeout_s: float = 90.0) -> str:
    """Start `evidently ui` in the background (or reuse a running one); return its URL."""
    url = evidently_ui_url(scope)
    workspace_dir = scope.state.path("evidently_workspace").resolve()
    workspace_dir.mkdir(parents=True, exist_ok=True)
    if not _healthy(url + "/api/projects"):
        cmd = evidently_ui_command(workspace_dir, scope.state.evidently_port)
        ready = lambda: _healthy(url + "/api/projects")  # noqa: E731
        launch(scope, "evidently-ui", cmd, os.environ.copy(), ready, timeout_s)
    return url


def stop_evidently_ui(scope: Scope) -> bool:
    """Stop the Evidently UI this workspace started."""
    return _stop(scope, "evidently-ui")


def stop_all(scope: Scope) -> list[str]:
    """Stop the service, the worker, the Evidently UI and the Prefect server; the names of
    those that ran."""
    stops = (
        ("service", stop_service),
        ("worker", stop_worker),
        ("evidently ui", stop_evidently_ui),
        ("prefect server", stop_server),
    )
    return [name for name, stop in stops if stop(scope)]


def bring_up(scope: Scope, scope_path: Path) -> str:
    """Register the deployments, start the worker and the service; return the service URL."""
    from deployments.work_pool import deploy_all  # it builds on this module

    deploy_all(scope)
    start_worker(scope)
    return start_service(scope, scope_path)


def store_has_model(scope: Scope) -> bool:
    """True when the BentoML store (under the workspace) holds a version of the model."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        return bool(bentoml.models.list(scope.registry.model_name))
    except NotFound:
        return False
