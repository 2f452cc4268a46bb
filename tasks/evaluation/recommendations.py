"""Next round's augmentation policy from the slice metrics, with the reason for each change."""

from __future__ import annotations

import copy
from collections.abc import Mapping
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
    missing = [k for k in AugmentationPolicy.TUNABLE_KEYS if k not in policy]
    if missing:
        raise ValueError(f"current_policy is missing keys {missing}; got keys {sorted(policy)}")
    share = float(policy["augmented_share"])
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"expected augmented_share in [0, 1], got {share}")
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


def _much_worse(bad: float, good: float, ratio: float, min_gap: float) -> bool:
    """Whether `bad` exceeds `good` by the ratio and by an absolute margin."""
    return bad > ratio * good and bad - good > min_gap


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
    policy: dict[str, Any] = copy.deepcopy(dict(current_policy))
    policy["noise_weights"] = {str(k): float(v) for k, v in policy["noise_weights"].items()}
    actions: list[str] = []
    reasons: list[str] = []
    changes: dict[str, dict[str, Any]] = {}

    condition = _slice_values(slices, "condition", min_n)
    if {"car", "clean"} <= set(condition.index):
        car, clean = condition["car"], condition["clean"]
        if _much_worse(car, clean, ratio, min_gap):
            old = float(policy["augmented_share"])
            new = round(min(old + share_step, share_cap), 6)
            if new > old:
                policy["augmented_share"] = new
                changes["augmented_share"] = {"from": old, "to": new}
                actions.append(f"raise augmented_share {old:.2f} -> {new:.2f}")
                reasons.append(
                    f"car WER {car:.3f} > {ratio:g} x clean WER {clean:.3f}: "
                    "more noisy training audio"
                )
            else:
                reasons.append(
                    f"car WER {car:.3f} > {ratio:g} x clean WER {clean:.3f}, but augmented_share "
                    f"is already at the cap {share_cap:.2f}"
                )

    snr = _slice_values(slices, "snr_bucket", min_n).drop(["clean", UNKNOWN], errors="ignore")
    snr = snr.reindex([b for b in SNR_BUCKETS if b in snr.index])
    if len(snr) >= 2 and snr.max() > snr.min() and snr.idxmax() == snr.index[0]:
        old_max, floor = float(policy["snr_db_max"]), float(policy["snr_db_min"]) + min_snr_span_db
        new_max = max(old_max - snr_step_db, floor)
        if new_max < old_max:
            policy["snr_db_max"] = new_max
            changes["snr_db_max"] = {"from": old_max, "to": new_max}
            actions.append(f"lower snr_db_max {old_max:g} -> {new_max:g} dB (more low-SNR samples)")
            reasons.append(
                f"worst SNR bucket is the lowest one ({snr.index[0]}: WER {snr.iloc[0]:.3f})"
            )
        else:
            reasons.append(
                f"worst SNR bucket is the lowest one ({snr.index[0]}), but snr_db_max {old_max:g} "
                f"is already at the floor snr_db_min + {min_snr_span_db:g}"
            )

    noise = _slice_values(slices, "noise_type", min_n).drop(["none", UNKNOWN], errors="ignore")
    if len(noise) >= 2 and noise.max() > noise.min():
        worst = str(noise.idxmax())
        weights = policy["noise_weights"]
        known = worst in weights
        base = (
            weights[worst]
            if known
            else (float(np.mean(list(weights.values()))) if weights else 1.0)
        )
        weights[worst] = round(base * noise_boost, 6)
        changes["noise_weights"] = {
            "from": dict(current_policy["noise_weights"]),
            "to": dict(weights),
        }
        actions.append(f"boost noise_weights[{worst!r}] {base:g} -> {weights[worst]:g}")
        reasons.append(
            f"noise type {worst!r} has the worst WER {noise[worst]:.3f} among noise types"
            + ("" if known else " and was missing from the policy (added at the mean weight)")
        )

    era = _slice_values(slices, "era", min_n)
    if {"new", "launch"} <= set(era.index) and _much_worse(
        era["new"], era["launch"], ratio, min_gap
    ):
        actions += [
            "collect/label production data with new names",
            "add hot words (new entity names) to the decoder's biasing list",
        ]
        reasons.append(
            f"era=new WER {era['new']:.3f} vs era=launch {era['launch']:.3f}: "
            "new names are not covered by training data"
        )

    entity = _slice_values(slices, "has_entity", min_n)
    if {"True", "False"} <= set(entity.index) and _much_worse(
        entity["True"], entity["False"], ratio, min_gap
    ):
        actions.append("synthesise more utterances containing entity names; add them as hot words")
        reasons.append(
            f"has_entity=True WER {entity['True']:.3f} vs has_entity=False {entity['False']:.3f}"
        )

    for verdict in diagnosis.verdict:
        reasons.append(f"diagnosis {verdict}: see actions")
    actions += diagnosis.actions
    if not changes:
        reasons.append("no slice rule changed the augmentation policy")
    return {
        "policy": policy,
        "actions": list(dict.fromkeys(actions)),
        "reasons": reasons,
        "changes": changes,
    }
