"""The whole service `kill -9`ed during a model switch (bench/service_kill.py, which
`bench faults` runs too): after a restart it serves one whole model, old or new, that
/metadata and every answer name, and no acknowledged prediction is missing from the log."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.service_kill import service_kill_during_switch

pytestmark = pytest.mark.slow


def test_a_service_killed_mid_switch_restarts_on_one_whole_model_and_lost_nothing(
    tmp_path: Path,
) -> None:
    outcome = service_kill_during_switch(tmp_path)
    assert outcome["processes_killed"] >= 2, outcome  # the arbiter and its workers
    assert outcome["acknowledged_before_kill"] > 0, outcome
    assert "2" in outcome["versions_answering_at_kill"], outcome  # the switch had begun
    assert outcome["served_after_restart"] in {"1", "2"}, outcome
    assert outcome["answers_after_restart"] == [200] * 4, outcome
    assert outcome["versions_after_restart"] == [outcome["served_after_restart"]], outcome
    assert outcome["lost"] == 0, outcome
