"""Promotion gate: decide whether a challenger model replaces the champion (pure logic).

Both models are scored with ``tasks.evaluation.slice_metrics`` on the same fixed test set;
the tables they pass in are ``data_contracts.evaluation.SliceMetrics``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd
import pandera.pandas as pa
from pandera.typing import DataFrame

from data_contracts.evaluation import SliceMetrics
from data_contracts.scoping import Targets

METRICS: tuple[str, ...] = ("wer", "cer")
_EPS = 1e-9  # float slack so that e.g. 0.35 - 0.30 counts as exactly 0.05


@dataclass(frozen=True)
class GateDecision:
    """Whether to promote, with at least one human-readable reason.

    `notes` say what the gate read but does not decide on (the serving targets).
    """

    promote: bool
    reasons: tuple[str, ...]
    notes: tuple[str, ...] = ()


def serving_target_notes(targets: Targets) -> tuple[str, ...]:
    """What the gate says about the scope's latency and throughput targets, which it cannot see."""
    return (
        f"serving targets p95 latency <= {targets.p95_latency_ms:g} ms and throughput >= "
        f"{targets.min_throughput_rps:g} req/s (targets.p95_latency_ms, "
        "targets.min_throughput_rps) are measured over HTTP by `voicecycle bench serve`; "
        "this gate judges accuracy only",
    )


def parse_target(name: str) -> tuple[str, str, str]:
    """Split a target name into (metric, slice, value): wer_car, cer_overall, wer_era=new."""
    metric, sep, rest = name.partition("_")
    if metric not in METRICS or not sep or not rest:
        raise ValueError(
            "expected a target named '<wer|cer>_<condition>' (e.g. 'wer_car'), "
            f"'<wer|cer>_overall' or '<wer|cer>_<slice>=<value>', got {name!r}"
        )
    if rest == "overall":
        return metric, "overall", "all"
    if "=" in rest:
        slice_, _, value = rest.partition("=")
        return metric, slice_, value
    return metric, "condition", rest


def _lookup(table: pd.DataFrame, slice_: str, value: str, metric: str) -> float:
    """Metric for one (slice, value) row, NaN when the row is missing."""
    rows = table[(table["slice"] == slice_) & (table["value"] == value)]
    return float(rows[metric].iloc[0]) if len(rows) else math.nan


@pa.check_types(lazy=True)
def targets_met(
    slices: DataFrame[SliceMetrics], targets: Mapping[str, float]
) -> dict[str, tuple[float, float, bool]]:
    """Per target name: (observed value, target, met); a missing slice is NaN and not met."""
    result: dict[str, tuple[float, float, bool]] = {}
    for name, target in targets.items():
        metric, slice_, value = parse_target(name)
        observed = _lookup(slices, slice_, value, metric)
        met = not math.isnan(observed) and observed <= float(target) + _EPS
        result[name] = (observed, float(target), met)
    return result


def _target_sentences(
    checks: Mapping[str, tuple[float, float, bool]],
) -> tuple[list[str], list[str]]:
    """(failures, passes) sentences for target checks."""
    failures: list[str] = []
    passes: list[str] = []
    for name, (observed, target, met) in checks.items():
        _, slice_, value = parse_target(name)
        if math.isnan(observed):
            failures.append(
                f"{name}: slice {slice_}={value} missing from challenger metrics "
                f"(target {target:.3f} not met)"
            )
        elif not met:
            failures.append(f"{name} {observed:.3f} > target {target:.3f}")
        else:
            passes.append(f"{name} {observed:.3f} <= target {target:.3f}")
    return failures, passes


def _overall_wer(table: pd.DataFrame, what: str) -> float:
    """Overall WER of a slice table, or ValueError when there is no overall row."""
    value = _lookup(table, "overall", "all", "wer")
    if math.isnan(value):
        raise ValueError(f"expected an overall row (slice='overall', value='all') in {what}")
    return value


def _slice_regressions(
    challenger: pd.DataFrame, champion: pd.DataFrame, tolerance: float, min_n: int
) -> tuple[list[str], int]:
    """Sentences for shared slices worse than the champion beyond tolerance; slices compared."""
    keys = ["slice", "value"]
    both = challenger.merge(champion, on=keys, suffixes=("_new", "_old"))
    both = both[
        (both["slice"] != "overall")
        & (both["n_new"] >= min_n)
        & (both["n_old"] >= min_n)
        & both["wer_new"].notna()
        & both["wer_old"].notna()
    ]
    both = both.assign(delta=both["wer_new"] - both["wer_old"])
    worse = both[both["delta"] > tolerance + _EPS].sort_values("delta", ascending=False)
    sentences = [
        f"slice {r.slice}={r.value}: {r.wer_new:.3f} vs champion {r.wer_old:.3f} "
        f"(+{r.delta:.3f} > tolerance {tolerance:.3f})"
        for r in worse.itertuples()
    ]
    return sentences, len(both)


@pa.check_types(lazy=True)
def promotion_gate(
    challenger: DataFrame[SliceMetrics],
    champion: DataFrame[SliceMetrics] | None,
    targets: Mapping[str, float],
    slice_tolerance: float,
    *,
    min_slice_n: int = 1,
) -> GateDecision:
    """Promote iff all targets are met and nothing regresses vs the champion (overall, slices)."""
    if not math.isfinite(slice_tolerance) or slice_tolerance < 0:
        raise ValueError(f"expected slice_tolerance >= 0, got {slice_tolerance!r}")
    new = challenger
    failures, passes = _target_sentences(targets_met(new, targets))
    if not targets:
        passes.append("no targets configured")
    if champion is None:
        passes.append("no champion yet: challenger judged on targets only")
    else:
        old = champion
        new_wer, old_wer = _overall_wer(new, "challenger"), _overall_wer(old, "champion")
        if new_wer > old_wer + _EPS:
            failures.append(f"overall WER {new_wer:.3f} > champion {old_wer:.3f}")
        else:
            passes.append(f"overall WER {new_wer:.3f} <= champion {old_wer:.3f}")
        regressions, compared = _slice_regressions(new, old, slice_tolerance, min_slice_n)
        failures += regressions
        if not regressions:
            passes.append(
                f"no shared slice worse than champion by more than {slice_tolerance:.3f} WER "
                f"({compared} slices compared)"
            )
    if failures:
        return GateDecision(promote=False, reasons=tuple(failures))
    return GateDecision(promote=True, reasons=tuple(passes))


def overruled(decision: GateDecision, why: str) -> GateDecision:
    """The gate's decision after the registry refused the move (another retrain won the race):
    not promoted, that reason first, the gate's own reasons kept."""
    return GateDecision(False, (why, *decision.reasons), decision.notes)
