"""The local runtime (deployments/local.py) keeps its state where the scope says: pid files
and logs in state.run_dir, the admin token in state.admin_token_file; the service gets the
scope as BentoML template arguments, never as environment variables."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import psutil
import pytest

from data_contracts.scoping import Scope
from deployments.local import (
    admin_token_file,
    launch,
    service_command,
    stop_pidfile,
    stop_service,
)


def test_admin_token_is_created_once_private_where_the_scope_says(tmp_path: Path) -> None:
    scope = Scope().with_workspace(tmp_path)
    path = admin_token_file(scope)
    assert path == scope.state.path("admin_token_file").resolve()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = path.read_text()
    assert len(token) >= 24
    assert admin_token_file(scope).read_text() == token  # kept, not replaced


def test_service_command_hands_scope_and_workspace_as_arguments(tmp_path: Path) -> None:
    scope = Scope().with_workspace(tmp_path / "ws")
    scope_file = tmp_path / "scope.yaml"
    cmd = service_command(scope, scope_file)
    assert cmd[1:4] == ["-m", "bentoml", "serve"]
    assert f"scope={scope_file.resolve()}" in cmd
    assert f"workspace={(tmp_path / 'ws').resolve()}" in cmd
    assert cmd[cmd.index("--port") + 1] == str(scope.serving.port)
    assert not any("VOICECYCLE" in part for part in cmd)
    assert scope.state.path("admin_token_file").is_file()  # the service reads it there


# the runtime leaves its servers running on purpose; Python warns when it drops the handle
@pytest.mark.filterwarnings("ignore:subprocess .* is still running:ResourceWarning")
def test_launch_keeps_pid_and_log_in_run_dir_and_stop_ends_the_process(tmp_path: Path) -> None:
    scope = Scope().with_workspace(tmp_path)
    code = "import time; print('up', flush=True); time.sleep(120)"
    launch(scope, "sleeper", [sys.executable, "-c", code], {}, None, 0)
    run_dir = scope.state.path("run_dir").resolve()
    pidfile = run_dir / "sleeper.pid"
    pid = int(pidfile.read_text())
    assert psutil.pid_exists(pid) and (run_dir / "sleeper.log").is_file()
    assert stop_pidfile(pidfile, grace_s=10) is True
    assert not pidfile.exists()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert stop_pidfile(pidfile) is False  # nothing left to stop


def test_launch_reports_a_process_that_dies_before_it_is_ready(tmp_path: Path) -> None:
    scope = Scope().with_workspace(tmp_path)
    cmd = [sys.executable, "-c", "raise SystemExit(3)"]
    with pytest.raises(RuntimeError, match=r"exited with code 3; see .*dying\.log"):
        launch(scope, "dying", cmd, {}, lambda: False, timeout_s=60)


@pytest.mark.filterwarnings("ignore:subprocess .* is still running:ResourceWarning")
def test_stop_also_finds_a_pid_file_an_older_checkout_left_in_the_workspace(
    tmp_path: Path,
) -> None:
    import subprocess

    scope = Scope().with_workspace(tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    (tmp_path / "service.pid").write_text(str(proc.pid))
    assert stop_service(scope) is True
    assert proc.wait(timeout=30) is not None and not (tmp_path / "service.pid").exists()
    assert stop_service(scope) is False
