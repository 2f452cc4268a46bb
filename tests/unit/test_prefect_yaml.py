"""prefect.yaml: every entrypoint imports and names a flow (prefect-recipes shipped one that
pointed at a file that did not exist)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOYMENTS = yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=[d["name"] for d in DEPLOYMENTS])
def test_entrypoint_names_a_flow(deployment: dict[str, object]) -> None:
    from prefect import Flow

    file, _, func = str(deployment["entrypoint"]).partition(":")
    path = REPO / file
    assert path.is_file(), f"{deployment['name']}: {file} does not exist"
    spec = importlib.util.spec_from_file_location(f"_entry_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert isinstance(getattr(module, func, None), Flow), f"{file}:{func} is not a flow"


def test_every_flow_file_is_deployed() -> None:
    deployed = {str(d["entrypoint"]).partition(":")[0] for d in DEPLOYMENTS}
    flow_files = {
        f"flows/{p.name}" for p in (REPO / "flows").glob("*.py") if "@flow" in p.read_text()
    }
    assert flow_files <= deployed, f"flows without a deployment: {flow_files - deployed}"
