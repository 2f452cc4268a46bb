"""Next round's augmentation policy from the slice metrics, with the reason for each change."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.typing import DataFrame

from data_contracts.evaluation import SliceMetrics
from data_contracts.scoping import AugmentationPolicy
from tasks.evaluation.diagnosis import Diagnosis
from tasks.evaluation.slices import SNR_BUCKETS, UNKNOWN


def _validate_policy(policy: Mapping[str, Any]) -> None:
    """Raise ValueError unless policy has the augmentation keys with sane values."""
    # the acoustic shares are optional here (a policy of an older scope has none)
    optional = {"reverb_share", "device_share", "telephone_share", "level_share"}
    missing = [k for k in AugmentationPolicy.TUNABLE_KEYS if k not in policy and k not in optional]
    if missing:
        raise ValueError(f"current_policy is missing keys {missing}; got keys {sorted(policy)}")
    for key in ("augmented_share", *sorted(optional & set(policy))):
        share = float(policy[key])
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"expected {key} in [0, 1], got {share}")
    if float(policy["snr_db_min"]) > float(policy["snr_db_max"]):
        raise ValueError(
            "expected snr_db_min <= snr_db_max, "
            f"got {policy['snr_db_min']} > {policy['snr_db_max']}"
        )
    weights = policy["noise_weights"]
    if not isinstance(weights, Mapping) or any(float(w) < 0 for w in weights.values()):
        raise ValueError(
            f"expected noise_weights as a dict of non-negative weights, got {weights!r}"
        )


def _slice_values(slices: pd.DataFrame, kind: str, min_n: int) -> pd.Series:
    """WER per value of one slice kind, keeping values with at least min_n utterances."""
    rows = slices[(slices["slice"] == kind) & (slices["n"] >= min_n)]
    return pd.Series(rows["wer"].to_numpy(dtype=float), index=rows["value"].astype(str))


@dataclass(frozen=True)
class _Thresholds:
    """When a slice counts as much worse, and how far one round may move the policy."""

    ratio: float
    min_gap: float
    share_step: float
    share_cap: float
    snr_step_db: float
    min_snr_span_db: float
    noise_boost: float

    def much_worse(self, bad: float, good: float) -> bool:
        """Whether `bad` exceeds `good` by the ratio and by an absolute margin."""
        return bad > self.ratio * good and bad - good > self.min_gap


@dataclass
class _Draft:
    """The next policy as the rules build it, with what they changed and why."""

    policy: dict[str, Any]
    actions: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    changes: dict[str, dict[str, Any]] = field(default_factory=dict)

    def change(self, key: str, old: Any, new: Any, action: str, reason: str) -> None:
        """Record one policy change with its action and reason."""
        self.changes[key] = {"from": old, "to": new}
        self.actions.append(action)
        self.reasons.append(reason)


def _share_rule(draft: _Draft, condition: pd.Series, t: _Thresholds) -> None:
    """Car audio much worse than clean: a larger share of noisy training copies."""
    if not {"car", "clean"} <= set(condition.index):
        return
    car, clean = condition["car"], condition["clean"]
    if not t.much_worse(car, clean):
        return
    worse = f"car WER {car:.3f} > {t.ratio:g} x clean WER {clean:.3f}"
    old = float(draft.policy["augmented_share"])
    new = round(min(old + t.share_step, t.share_cap), 6)
    if new > old:
        draft.policy["augmented_share"] = new
        draft.change(
            "augmented_share",
            old,
            new,
            f"raise augmented_share {old:.2f} -> {new:.2f}",
            f"{worse}: more noisy training audio",
        )
    else:
        draft.reasons.append(
            f"{worse}, but augmented_share is already at the cap {t.share_cap:.2f}"
        )


def _telephone_rule(draft: _Draft, condition: pd.Series, t: _Thresholds) -> None:
    """Telephone audio much worse than clean: more training copies over a telephone line."""
    if not {"telephone", "clean"} <= set(condition.index) or "telephone_share" not in draft.policy:
        return
    line, clean = condition["telephone"], condition["clean"]
    if not t.much_worse(line, clean):
        return
    worse = f"telephone WER {line:.3f} > {t.ratio:g} x clean WER {clean:.3f}"
    old = float(draft.policy["telephone_share"])
    new = round(min(old + t.share_step, t.share_cap), 6)
    if new > old:
        draft.policy["telephone_share"] = new
        draft.change(
            "telephone_share",
            old,
            new,
            f"raise telephone_share {old:.2f} -> {new:.2f}",
            f"{worse}: more training copies over a telephone line (8 kHz, codecs)",
        )
    else:
        draft.reasons.append(
            f"{worse}, but telephone_share is already at the cap {t.share_cap:.2f}"
        )


def _snr_rule(draft: _Draft, snr: pd.Series, t: _Thresholds) -> None:
    """The lowest SNR bucket is the worst: a lower snr_db_max, so more low-SNR copies."""
    snr = snr.drop(["clean", UNKNOWN], errors="ignore")
    snr = snr.reindex([b for b in SNR_BUCKETS if b in snr.index])
    if not (len(snr) >= 2 and snr.max() > snr.min() and snr.idxmax() == snr.index[0]):
        return
    old_max = float(draft.policy["snr_db_max"])
    new_max = max(old_max - t.snr_step_db, float(draft.policy["snr_db_min"]) + t.min_snr_span_db)
    if new_max < old_max:
        draft.policy["snr_db_max"] = new_max
        draft.change(
            "snr_db_max",
            old_max,
            new_max,
            f"lower snr_db_max {old_max:g} -> {new_max:g} dB (more low-SNR samples)",
            f"worst SNR bucket is the lowest one ({snr.index[0]}: WER {snr.iloc[0]:.3f})",
        )
    else:
        draft.reasons.append(
            f"worst SNR bucket is the lowest one ({snr.index[0]}), but snr_db_max {old_max:g} "
            f"is already at the floor snr_db_min + {t.min_snr_span_db:g}"
        )


def _noise_rule(draft: _Draft, noise: pd.Series, t: _Thresholds) -> None:
    """One noise type is the worst: boost its sampling weight (a new type joins at the mean)."""
    noise = noise.drop(["none", UNKNOWN], errors="ignore")
    if not (len(noise) >= 2 and noise.max() > noise.min()):
        return
    worst = str(noise.idxmax())
    weights = draft.policy["noise_weights"]
    before = dict(weights)
    known = worst in weights
    base = weights[worst] if known else (float(np.mean(list(weights.values()))) if weights else 1.0)
    weights[worst] = round(base * t.noise_boost, 6)
    draft.change(
        "noise_weights",
        before,
        dict(weights),
        f"boost noise_weights[{worst!r}] {base:g} -> {weights[worst]:g}",
        f"noise type {worst!r} has the worst WER {noise[worst]:.3f} among noise types"
        + ("" if known else " and was missing from the policy (added at the mean weight)"),
    )


def _coverage_rules(draft: _Draft, era: pd.Series, entity: pd.Series, t: _Thresholds) -> None:
    """New names or entity names much worse: human actions (data and hot words), no policy."""
    if {"new", "launch"} <= set(era.index) and t.much_worse(era["new"], era["launch"]):
        draft.actions += [
            "collect/label production data with new names",
            "add hot words (new entity names) to the decoder's biasing list",
        ]
        draft.reasons.append(
            f"era=new WER {era['new']:.3f} vs era=launch {era['launch']:.3f}: "
            "new names are not covered by training data"
        )
    if {"True", "False"} <= set(entity.index) and t.much_worse(entity["True"], entity["False"]):
        draft.actions.append(
            "synthesise more utterances containing entity names; add them as hot words"
        )
        draft.reasons.append(
            f"has_entity=True WER {entity['True']:.3f} vs has_entity=False {entity['False']:.3f}"
        )


@pa.check_types(lazy=True)
def recommendations(
    slices: DataFrame[SliceMetrics],
    diagnosis: Diagnosis,
    current_policy: Mapping[str, Any],
    *,
    ratio: float = 1.25,
    min_gap: float = 0.01,
    share_step: float = 0.1,
    share_cap: float = 0.8,
    snr_step_db: float = 5.0,
    min_snr_span_db: float = 5.0,
    noise_boost: float = 1.5,
    min_n: int = 5,
) -> dict[str, Any]:
    """Next round's augmentation policy plus human actions and the reason for each change."""
    _validate_policy(current_policy)
    t = _Thresholds(
        ratio, min_gap, share_step, share_cap, snr_step_db, min_snr_span_db, noise_boost
    )
    policy: dict[str, Any] = copy.deepcopy(dict(current_policy))
    policy["noise_weights"] = {str(k): float(v) for k, v in policy["noise_weights"].items()}
    draft = _Draft(policy)
    _share_rule(draft, _slice_values(slices, "condition", min_n), t)
    _telephone_rule(draft, _slice_values(slices, "condition", min_n), t)
    _snr_rule(draft, _slice_values(slices, "snr_bucket", min_n), t)
    _noise_rule(draft, _slice_values(slices, "noise_type", min_n), t)
    era, entity = _slice_values(slices, "era", min_n), _slice_values(slices, "has_entity", min_n)
    _coverage_rules(draft, era, entity, t)
    draft.reasons += [f"diagnosis {verdict}: see actions" for verdict in diagnosis.verdict]
    draft.actions += diagnosis.actions
    if not draft.changes:
        draft.reasons.append("no slice rule changed the augmentation policy")
    return {
        "policy": draft.policy,
        "actions": list(dict.fromkeys(draft.actions)),
        "reasons": draft.reasons,
        "changes": draft.changes,
    }
