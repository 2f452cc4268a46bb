"""A full disk under the workspace (bench/kills.py's `disk_full`, which `bench faults` runs
too): `voicecycle ingest` and `augment` fail with one clear message (exit 6), publish no
version, leave no staging folder, and the stored version's files are unchanged.

The workspace sits on a 64 MB tmpfs the test mounts (as root), filled to 300 KB free before
the second runs; where mounting is not allowed the commands run under RLIMIT_FSIZE instead
(each write past the limit fails with EFBIG, as the kernel refuses it).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from bench.kills import disk_full, mount_small_disk, unmount
from tests.conftest import tiny_scope

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_server")]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path | None]:
    """A 64 MB tmpfs at tmp_path/disk, or None where mounting is not allowed."""
    disk = tmp_path / "disk"
    if not mount_small_disk(disk):
        yield None
        return
    try:
        yield disk
    finally:
        unmount(disk)


def test_a_full_disk_fails_ingest_and_augment_cleanly(
    tmp_path: Path, small_disk: Path | None
) -> None:
    from prefect.settings import get_current_settings

    base = tiny_scope((small_disk or tmp_path) / "ws", n_utterances=16, n_voices=4)
    state = base.state.model_copy(update={"prefect_api_url": str(get_current_settings().api.url)})
    scope = base.model_copy(update={"state": state})
    scope_file = tmp_path / "scope.yaml"
    scope_file.write_text(yaml.safe_dump(scope.model_dump(mode="json"), sort_keys=False))

    outcome = disk_full(scope_file, scope, small_disk)

    assert outcome["exits"] == {"ingest": 6, "augment": 6}, outcome
    for stderr in outcome["stderr"].values():
        assert "Traceback" not in stderr, stderr
        assert "nothing was published" in stderr, stderr
        assert ("No space left" in stderr) or ("File too large" in stderr), stderr
    assert outcome["left_behind"] == [] and outcome["partial_versions"] == 0, outcome
    assert outcome["stored_unchanged"], outcome
