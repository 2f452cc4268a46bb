"""A full disk under the workspace: `voicecycle ingest` and `augment` fail with one clear
message (exit 6), publish no version, leave no staging folder, and the stored version's files
are unchanged.

The workspace sits on a small tmpfs the test mounts (as root), filled to a few hundred KB
free before the second runs; where mounting is not allowed the commands run under
RLIMIT_FSIZE instead (each write past the limit fails with EFBIG, as the kernel refuses it).
"""

from __future__ import annotations

import hashlib
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from data_contracts.scoping import Scope
from tests.conftest import tiny_scope

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_server")]

REPO = Path(__file__).resolve().parents[2]
FILE_LIMIT = 40_000  # bytes: below one clip, above the scope and the CLI's small files


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path | None]:
    """A 64 MB tmpfs at tmp_path/disk, or None where mounting is not allowed."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(disk)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        yield None
        return
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill(disk: Path, leave: int = 300_000) -> None:
    stat = os.statvfs(disk)
    free = stat.f_bavail * stat.f_frsize
    with (disk / "ballast").open("wb") as out:
        out.truncate(0)
        chunk = b"\0" * (1 << 20)
        remaining = free - leave
        while remaining > 0:
            out.write(chunk[: min(len(chunk), remaining)])
            remaining -= len(chunk)


def _limited() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a refused write is EFBIG, not a signal
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT, FILE_LIMIT))


def _voicecycle(
    scope_file: Path, *args: str, limit: Callable[[], None] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args, "--scope", str(scope_file)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=limit,
        check=False,
    )


def _hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _scope(workspace: Path) -> Scope:
    from prefect.settings import get_current_settings

    base = tiny_scope(workspace, n_utterances=16, n_voices=4)
    state = base.state.model_copy(update={"prefect_api_url": str(get_current_settings().api.url)})
    return base.model_copy(update={"state": state})


def test_a_full_disk_fails_ingest_and_augment_cleanly(
    tmp_path: Path, small_disk: Path | None
) -> None:
    scope = _scope((small_disk or tmp_path) / "ws")
    scope_file = tmp_path / "scope.yaml"
    scope_file.write_text(yaml.safe_dump(scope.model_dump(mode="json"), sort_keys=False))
    first = _voicecycle(scope_file, "ingest")
    assert first.returncode == 0, first.stderr[-3000:]
    datasets = scope.state.path("datasets_dir")
    (stored,) = [p for p in datasets.iterdir() if p.name.startswith("ds-")]
    before = _hashes(stored)

    if small_disk is not None:
        _fill(small_disk)
    limit = None if small_disk is not None else _limited
    # the same sources again: the corpus is reused, the clips are probed into a new staging
    again = _voicecycle(scope_file, "ingest", limit=limit)
    augmented = _voicecycle(scope_file, "augment", "--dataset-version", stored.name, limit=limit)

    for done in (again, augmented):
        assert done.returncode == 6, (done.returncode, done.stderr[-3000:])
        assert "Traceback" not in done.stderr, done.stderr[-3000:]
        assert "nothing was published" in done.stderr, done.stderr[-2000:]
        assert ("No space left" in done.stderr) or ("File too large" in done.stderr)
    assert sorted(p.name for p in datasets.iterdir()) == [stored.name]  # no staging left
    augmented_dir = scope.state.path("augmented_dir")
    assert not augmented_dir.exists() or not list(augmented_dir.iterdir())
    assert _hashes(stored) == before
