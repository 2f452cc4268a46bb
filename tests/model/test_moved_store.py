"""A workspace moved to another folder keeps a working MLflow registry (tasks/mlflow_store.py):
the store's absolute artifact URIs follow it, once, and a copy points at its own files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tasks.mlflow_store import moved_prefixes, rebase_moved_store
from tasks.registry import configure_mlflow


def _workspace_with_a_run(ws: Path) -> str:
    """A store under `ws` with one run holding one artifact; the run id."""
    import mlflow

    uri = f"sqlite:///{ws}/mlflow/mlflow.db"
    configure_mlflow(uri, "moves", ws / "mlflow" / "artifacts")
    note = ws / "note.txt"
    note.write_text("kept\n")
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(note))
    return str(run.info.run_id)


def _read_back(ws: Path, run_id: str, dest: Path) -> str:
    import mlflow

    configure_mlflow(f"sqlite:///{ws}/mlflow/mlflow.db", "moves", ws / "mlflow" / "artifacts")
    got = mlflow.artifacts.download_artifacts(run_id=run_id, dst_path=str(dest))
    return (Path(got) / "note.txt").read_text()


def test_prefixes_drop_the_common_tail() -> None:
    assert moved_prefixes("file:///a/ws/mlflow/artifacts", "file:///b/c/ws2/mlflow/artifacts") == (
        "file:///a/ws",
        "file:///b/c/ws2",
    )
    assert moved_prefixes("file:///a/ws/m", "file:///b/ws/m") == ("file:///a", "file:///b")


def test_a_moved_workspace_reads_its_artifacts_from_the_new_place(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = _workspace_with_a_run(tmp_path / "ws")
    moved = tmp_path / "elsewhere" / "ws"
    shutil.move(tmp_path / "ws", moved)
    capsys.readouterr()
    assert _read_back(moved, run_id, tmp_path / "got") == "kept\n"
    line = capsys.readouterr().out
    assert "the workspace moved from" in line and str(moved) in line
    # done once: the next start finds nothing to rewrite
    uri = f"sqlite:///{moved}/mlflow/mlflow.db"
    assert rebase_moved_store(uri, "moves", moved / "mlflow" / "artifacts") == 0


def test_a_copied_workspace_points_at_its_own_files(tmp_path: Path) -> None:
    run_id = _workspace_with_a_run(tmp_path / "ws")
    shutil.copytree(tmp_path / "ws", tmp_path / "copy")
    assert _read_back(tmp_path / "copy", run_id, tmp_path / "got-copy") == "kept\n"
    shutil.rmtree(tmp_path / "ws")  # the original goes: the copy still reads its own
    assert _read_back(tmp_path / "copy", run_id, tmp_path / "again") == "kept\n"


def test_a_store_elsewhere_or_a_server_is_left_alone(tmp_path: Path) -> None:
    assert rebase_moved_store("http://127.0.0.1:5000", "moves", tmp_path) == 0
    assert rebase_moved_store(f"sqlite:///{tmp_path}/none.db", "moves", tmp_path) == 0
