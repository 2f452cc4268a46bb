"""The Label Studio round trip against a real server on 127.0.0.1 (its own venv,
`make labelstudio`): export a batch as a project with tasks, annotate through the API as a
person would (one skipped), import, and the labels arrive as a dataset source.

The server starts on a copy of a database that already holds Label Studio's migrations
(`make labelstudio` prepares it beside the venv; the first session builds it if missing):
migrating a fresh one is most of a first start.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from data_contracts.scoping import Scope
from tests.production_log import production_log

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_server")]

REPO = Path(__file__).resolve().parents[2]
LABEL_STUDIO = REPO / ".venv-labelstudio" / "bin" / "label-studio"
TEMPLATE = REPO / ".venv-labelstudio" / "template" / "label_studio.sqlite3"  # make labelstudio
TOKEN = "voicecycle-test-token-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError(f"{url} not up after {timeout_s:g} s: {log.read_text()[-2000:]}")


def ls_environ(data: Path) -> dict[str, str]:
    return {
        **os.environ,
        "LABEL_STUDIO_BASE_DATA_DIR": str(data),
        "LATEST_VERSION_CHECK": "false",
        "LABEL_STUDIO_LATEST_VERSION_CHECK": "false",
    }


def migrated_database(data: Path) -> None:
    """Put a migrated Label Studio database in `data`: a copy of the template, which is
    built first (as `make labelstudio` does) when it is missing."""
    if not TEMPLATE.is_file():
        build = TEMPLATE.parent.with_name(f"template.{os.getpid()}")
        shutil.rmtree(build, ignore_errors=True)
        subprocess.run(
            [str(LABEL_STUDIO), "version", "--data-dir", str(build)],  # migrates, then prints
            env=ls_environ(build),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        TEMPLATE.parent.mkdir(exist_ok=True)
        os.replace(build / "label_studio.sqlite3", TEMPLATE)
        shutil.rmtree(build)
    shutil.copyfile(TEMPLATE, data / "label_studio.sqlite3")


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real Label Studio server for the session, on a copy of the migrated template."""
    assert LABEL_STUDIO.is_file(), f"{LABEL_STUDIO} missing: run `make labelstudio`"
    data = tmp_path_factory.mktemp("label-studio")
    migrated_database(data)
    port = free_port()
    env = ls_environ(data)
    log = data / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(LABEL_STUDIO),
                "start",
                "--no-browser",
                "--data-dir",
                str(data),
                "--internal-host",
                "127.0.0.1",
                "--port",
                str(port),
                "--username",
                "labeller@example.com",
                "--password",
                "not-a-secret-123",
                "--user-token",
                TOKEN,
                "--enable-legacy-api-token",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_up(url + "/health", proc, log, 420)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def audio_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A static file server over the labelling folder: where Label Studio fetches audio."""
    root = tmp_path / "workspace" / "labelling"
    root.mkdir(parents=True)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}", root
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_export_annotate_import_round_trip(
    label_studio: str, audio_server: tuple[str, Path], tmp_path: Path
) -> None:
    from flows.label import open_batch
    from tasks.label_studio import client
    from tasks.labelling import labelling_status
    from tasks.manifests import read_manifest
    from tasks.monitoring import import_labelled
    from tasks.retraining import retrain_scope

    audio_url, _ = audio_server
    workspace = tmp_path / "workspace"
    (workspace / "ls_token").write_text(TOKEN + "\n")
    scope = Scope().with_workspace(workspace)
    labelling = scope.labelling.model_copy(
        update={
            "label_studio_url": label_studio,
            "label_studio_token_file": Path("ls_token"),
            "audio_base_url": audio_url,
        }
    )
    scope = scope.model_copy(update={"labelling": labelling})

    opened = open_batch(scope, production_log(tmp_path, 5), "drift share 0.5 >= 0.3")
    assert opened is not None and opened["tasks"] == 4
    project = opened["label_studio_project"]
    assert opened["link"] == f"{label_studio}/projects/{project}/data"

    with client(scope) as ls:  # a person at the labelling UI
        tasks = sorted(ls.tasks(project), key=lambda t: t["data"]["confidence"])
        assert [t["data"]["request_id"] for t in tasks] == ["r4", "r1", "r2", "r0"]
        assert all(t["total_predictions"] == 1 for t in tasks)  # the model's pre-annotation
        audio = httpx.get(tasks[0]["data"]["audio"], timeout=10)
        assert audio.status_code == 200 and audio.content[:4] == b"RIFF"
        ls.annotate(tasks[0]["id"], "who is oriane kolawole")
        ls.annotate(tasks[1]["id"], "call mom")
        ls.skip(tasks[2]["id"])

    done = import_labelled.fn(scope, None, trigger=False)

    assert done["labelled"] == 2
    reasons = {q["request_id"]: q["reason"] for q in done["quarantined"]}
    assert reasons == {
        "r2": "skipped by the annotator (was_cancelled)",
        "r0": "no annotation",
    }
    assert done["pending_labels"] == 2 and not done["retrain"]
    raw = read_manifest(Path(done["label_files"][0]), "labelled-0")
    assert dict(zip(raw["utterance_id"], raw["transcript"], strict=True)) == {
        "r4": "who is oriane kolawole",
        "r1": "call mom",
    }
    next_scope, _ = retrain_scope.fn(scope)
    assert [s.path for s in next_scope.sources if s.kind == "csv"] == [Path(done["label_files"][0])]
    # pulled again: nothing twice; the batch stays open for the two still missing
    again = import_labelled.fn(scope, None, trigger=False)
    assert again["labelled"] == 0
    assert labelling_status(scope.state.path("labelling_dir"))["open_batches"] == [opened["batch"]]
