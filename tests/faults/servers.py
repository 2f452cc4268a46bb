"""A real `bentoml serve` for the fault tests and `bench faults`, with a model store of its own.

The store is filled in a child process, so this process's BentoML container (resolved once per
process) is never pointed at it: the service tests' session store stays theirs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.service.conftest import METADATA, MODEL_NAME, StoredModel
from tests.service.test_real_server import Server, start_server, stop_server

__all__ = ["Server", "make_store", "start_server", "start_tuned", "stop_server"]

REPO = Path(__file__).resolve().parents[2]
_FILL = """
import sys
from pathlib import Path
from tests.service.conftest import METADATA, MODEL_NAME, save_random_recognizer
from tasks.packaging import import_recognizer
recognizer = save_random_recognizer(Path(sys.argv[1]), seed=int(sys.argv[2]))
metadata = {**METADATA, "registry_version": sys.argv[2]}
print(import_recognizer(recognizer, MODEL_NAME, metadata, {"stage": "faults"}))
"""


def make_store(root: Path, version: int = 1) -> StoredModel:
    """A BentoML home under `root` holding a random-init recogniser as registry version
    `version` (made in a child process; a higher version in the same home is a new model the
    running service switches to at its next poll)."""
    home, recognizer = root / "bentoml-home", root / f"recognizer-{version}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BENTOML_")},
        "BENTOML_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "True",
        "PYTHONPATH": str(REPO),
    }
    done = subprocess.run(
        [sys.executable, "-c", _FILL, str(recognizer), str(version)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"filling the model store failed:\n{done.stderr[-3000:]}")
    assert METADATA["model_name"] == MODEL_NAME
    return StoredModel(home, done.stdout.strip().splitlines()[-1], recognizer)


def start_tuned(stored: StoredModel, root: Path, **serving: object) -> Server:
    """`start_server` with the scope's serving settings overridden (e.g. a small in-flight
    limit: `max_batch_size=2, workers=1` admits 8 requests at once)."""
    import time

    import httpx

    from deployments.arguments import serve_arguments, serve_command
    from tests.service.conftest import write_admin_token, write_scope
    from tests.service.test_real_server import READY_TIMEOUT_S, free_port

    workspace = root / "workspace"
    scope = write_scope(root / "scope.yaml", workspace, **serving)
    write_admin_token(workspace, "real-server-token")
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BENTOML_")},
        "BENTOML_HOME": str(stored.home),
        "BENTOML_DO_NOT_TRACK": "True",
        "PYTHONPATH": str(REPO),
    }
    log = root / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            serve_command("127.0.0.1", port, serve_arguments(scope, workspace, None)),
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(f"http://127.0.0.1:{port}", process, workspace, log)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"bentoml serve exited {process.returncode}:\n{server.log_tail()}")
        try:
            if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    stop_server(server)
    raise RuntimeError(f"bentoml serve not ready after {READY_TIMEOUT_S:.0f} s")
