"""bench/decoding.py on the tiny scope: it measures a registered champion's decoder on its
test split, general English and the story's clips, and writes the keys the issue names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.champions import register_champion
from tests.conftest import tiny_scope

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_server")]

KEYS = (
    "wer_clean",
    "wer_car",
    "wer_general_english",
    "greedy_wer_clean",
    "wer_new_names_before",
    "wer_new_names_hotwords",
    "wer_launch_names_hotwords",
    "decode_ms_per_clip",
    "decode_ms_per_clip_hotwords",
)


def test_bench_decoding_writes_its_figures(tmp_path: Path) -> None:
    from bench.decoding import main
    from flows.augment import augment
    from flows.ingest import ingest

    scope = tiny_scope(tmp_path / "ws")
    augmented = augment(scope, ingest(scope))
    # a small random champion; its run names the augmented version it was (not) trained on
    register_champion(
        scope,
        tmp_path / "rec",
        ["play jazz music", "what is the weather in denver"],
        int8=True,
        tags={"augmented_version": augmented},
    )
    out = tmp_path / "results"

    figures = main(scope, out, story_clips=6, general_clips=4)

    saved = json.loads((out / "decoding.json").read_text())
    for key in KEYS:
        assert isinstance(saved[key], float), key
        assert saved[key] >= 0, key
        if key.startswith(("wer_", "greedy_")):
            assert saved[key] <= 5, key  # a random model inserts, but not without bound
    assert saved["model_version"] == figures["model_version"] == "1"
    assert saved["test_split"] == f"{augmented} test split"
    clips = saved["clips"]
    assert clips["new_names"] == clips["launch_names"] == 6
    assert clips["general_english"] == 4 and clips["clean"] > 0 and clips["car"] > 0
    # no list is stored for the version: the bench mines one from the simulated typed queries
    assert saved["hot_words_source"].startswith("mined")
    assert saved["hot_words_phrases"] > 0
    assert saved["hot_words_decoder"] == dict(scope.hot_words.decoder)
