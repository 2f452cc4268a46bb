"""Simulate: production traffic as phones send it, spoken by held-out voices in a scenario
(stable, new names, in car, mixed), posted to the served endpoint."""

from __future__ import annotations

from prefect import flow

from data_contracts.scoping import Scope
from tasks.scoping import validate_scope
from tasks.simulation import (
    ScenarioName,
    endpoint_url,
    render_traffic,
    send_traffic,
    traffic_voices,
)


@flow(name="simulate", log_prints=True)
def simulate(
    scope: Scope,
    scenario: ScenarioName = "stable",
    count: int = 50,
    concurrency: int = 4,
    rate_per_s: float | None = None,
    voices: int = 24,
    seed: int = 2024,
    url: str | None = None,
    names: list[str] | None = None,
) -> dict[str, object]:
    """Send `count` simulated voice-search requests (`names`: the new-era people, instead of
    the corpus's); counts and latency percentiles."""
    validate_scope(scope)
    speakers = traffic_voices(scope, voices)
    clips = render_traffic(scenario, count, speakers, seed, names)
    result = send_traffic(url or endpoint_url(scope), clips, scenario, concurrency, rate_per_s)
    return result.summary()
