"""Beyond one machine, in files: prefect.yaml's Docker and Kubernetes work-pool base job
templates pass Prefect's own schema checks, and the Kubernetes manifest of the service has its
probes, resources and secret."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SPEC = yaml.safe_load((REPO / "prefect.yaml").read_text())
POOLS = SPEC["definitions"]["work_pools"]


@pytest.mark.parametrize("kind", ["docker", "kubernetes"])
def test_work_pool_templates_pass_prefects_schema(kind: str) -> None:
    from prefect.server.schemas.actions import DeploymentCreate, WorkPoolCreate
    from prefect.utilities.schema_tools.validation import ValidationError

    pool = POOLS[kind]
    template = json.loads((REPO / pool["base_job_template"]).read_text())
    # the server's own validation: every placeholder is a declared variable
    created = WorkPoolCreate(name=pool["name"], type=kind, base_job_template=template)
    assert created.base_job_template == template
    # the job variables prefect.yaml sets conform to the template's variables schema
    deployment = DeploymentCreate(
        name="train", flow_id="00000000-0000-0000-0000-000000000000",
        job_variables=pool["job_variables"],
    )  # fmt: skip
    deployment.check_valid_configuration(template)
    wrong = DeploymentCreate(
        name="train", flow_id="00000000-0000-0000-0000-000000000000",
        job_variables={**pool["job_variables"], "image": 3},
    )  # fmt: skip
    with pytest.raises(ValidationError, match="'image'.*not of type 'string'"):
        wrong.check_valid_configuration(template)
    # the workspace every flow run reads and writes is mounted
    assert "/srv/voicecycle/workspace" in json.dumps(template)


def test_a_template_with_an_undeclared_variable_is_refused() -> None:
    from prefect.server.schemas.actions import WorkPoolCreate

    template = json.loads((REPO / POOLS["docker"]["base_job_template"]).read_text())
    del template["variables"]["properties"]["image"]
    with pytest.raises(ValueError, match="undeclared"):
        WorkPoolCreate(name="broken", type="docker", base_job_template=template)


def test_process_pool_stays_the_default() -> None:
    assert {d["work_pool"]["name"] for d in SPEC["deployments"]} == {"voicecycle-local"}


def _service(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    return deployment


def test_kubernetes_manifest_of_the_service() -> None:
    docs = list(yaml.safe_load_all((REPO / "deploy" / "k8s" / "service.yaml").read_text()))
    deployment = _service(docs)
    assert deployment["spec"]["replicas"] >= 2
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    # the prediction log's password comes from a secret, as the team scope's {NAME} placeholder
    env = {e["name"]: e for e in container["env"]}
    assert "secretKeyRef" in env["VOICECYCLE_DB_PASSWORD"]["valueFrom"]
    team = yaml.safe_load((REPO / "scope.team.yaml").read_text())
    assert "{VOICECYCLE_DB_PASSWORD}" in team["state"]["prediction_log_url"]
    (service,) = [d for d in docs if d["kind"] == "Service"]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
