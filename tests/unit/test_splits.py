"""Splitting by voice: held-out voices stay held out when more data arrives."""

from __future__ import annotations

import pandas as pd

from data_contracts.scoping import SplitPolicy
from tasks.ingestion import assign_splits

POLICY = SplitPolicy(held_out_synthesizers=["klatt"])


def _rows(voices: list[str], synthesizer: str = "espeak") -> pd.DataFrame:
    return pd.DataFrame({"voice": voices, "synthesizer": synthesizer})


def test_adding_sources_never_moves_a_voice() -> None:
    base = _rows([f"espeak:v{i}" for i in range(80)])
    before = assign_splits(base, POLICY)
    grown = pd.concat(
        [base, _rows([f"production:{i}" for i in range(300)], "production")], ignore_index=True
    )
    after = assign_splits(grown, POLICY)
    assert (after.iloc[: len(base)].to_numpy() == before.to_numpy()).all()
    # shares follow the policy roughly, and the new voices are split too
    assert 0.05 < (before == "test").mean() < 0.3 and 0.02 < (before == "dev").mean() < 0.25
    assert set(after.iloc[len(base) :]) == {"train", "dev", "test"}


def test_small_sets_still_get_every_split_and_held_out_synthesizers_apart() -> None:
    frame = pd.concat([_rows(["a", "b", "c", "a"]), _rows(["k"], "klatt")], ignore_index=True)
    split = assign_splits(frame, POLICY)
    assert set(split.iloc[:4]) == {"train", "dev", "test"}
    assert split.iloc[0] == split.iloc[3]  # one voice, one split
    assert split.iloc[4] == "cross_synth"
