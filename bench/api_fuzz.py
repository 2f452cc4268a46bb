"""Schemathesis against a running service's own OpenAPI schema (`GET /docs.json`): every
operation, every response checked against what the schema declares, 4xx bodies included.
`fuzz_api` is what the CI test and `bench faults` both run (with different example counts)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis import checks as builtin
from schemathesis.errors import FailureGroup
from schemathesis.specs.openapi import checks as openapi_checks

SPEC_PATH = "/docs.json"


@dataclass
class ApiFuzzReport:
    cases: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    five_xx: list[str] = field(default_factory=list)  # "METHOD /path -> 500: body"
    violations: list[str] = field(default_factory=list)  # failed schema checks

    def as_dict(self) -> dict[str, object]:
        return {
            "schemathesis_cases": self.cases,
            "schemathesis_5xx": len(self.five_xx),
            "schema_violations": len(self.violations),
            "statuses": dict(self.statuses),
            "examples_5xx": self.five_xx[:5],
            "examples_violations": self.violations[:5],
        }


# the checks that say "the schema tells the truth" about each response
CHECKS = [
    builtin.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_headers_conformance,
    openapi_checks.response_schema_conformance,
]


def fuzz_api(
    base_url: str,
    max_examples: int,
    headers: dict[str, str] | None = None,
    skip: tuple[str, ...] = (),
) -> ApiFuzzReport:
    """Generate up to `max_examples` schema-valid and as many invalid requests per operation
    of the service at `base_url`, and check every answer against the declared schema."""
    schema = schemathesis.openapi.from_url(base_url + SPEC_PATH)
    report = ApiFuzzReport()
    for result in schema.get_all_operations():
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        if label not in skip:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                _fuzz_operation(operation, label, mode, base_url, max_examples, headers, report)
    return report


def _fuzz_operation(
    operation: Any,
    label: str,
    mode: GenerationMode,
    base_url: str,
    max_examples: int,
    headers: dict[str, str] | None,
    report: ApiFuzzReport,
) -> None:

    @settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        response = case.call(base_url=base_url, headers=headers, timeout=60)
        report.cases += 1
        report.statuses[f"{label} {response.status_code}"] += 1
        if response.status_code >= 500 and response.status_code != 503:
            report.five_xx.append(f"{label} -> {response.status_code}: {response.text[:200]}")
        report.violations += violations(case, response, label)

    try:
        run()
    except Unsatisfiable:  # nothing invalid to send (an operation without inputs)
        pass


def violations(case: schemathesis.Case, response: Any, label: str) -> list[str]:
    """What in `response` the declared schema does not allow (empty when it conforms)."""
    try:
        case.validate_response(response, checks=CHECKS)
    except (AssertionError, FailureGroup) as failed:
        found = getattr(failed, "exceptions", (failed,))
        return [f"{label} -> {response.status_code}: {failure}"[:600] for failure in found]
    return []
