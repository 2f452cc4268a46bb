"""bench/decoding.py on the tiny scope: it measures a registered champion's decoder on its
test split, general English and the story's clips, and writes the keys the issue names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

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


def _register_champion(scope, augmented: str, folder: Path) -> None:  # type: ignore[no-untyped-def]
    """A small random recogniser with a beam decoder, registered as the champion; its run
    names the augmented version it was (not) trained on, as a training run does."""
    import mlflow

    from models.ctc import AcousticModelConfig, CTCAcousticModel
    from models.decoder import BeamDecoder, WordLM
    from models.recognizer import Recognizer
    from tasks.registry import configure_mlflow, promote, register_model

    configure_mlflow(
        scope.state.url("mlflow_tracking_uri"),
        scope.registry.experiment,
        scope.state.path("mlflow_artifacts"),
    )
    torch.manual_seed(0)
    model = CTCAcousticModel(AcousticModelConfig(conv_channels=32, rnn_hidden=32, rnn_layers=1))
    lm = WordLM.from_transcripts(["play jazz music", "what is the weather in denver"])
    Recognizer(model.eval(), BeamDecoder(lm), int8=True).save(folder)
    experiment = mlflow.get_experiment_by_name(scope.registry.experiment)
    client = mlflow.MlflowClient()
    run = client.create_run(experiment.experiment_id, tags={"augmented_version": augmented})
    client.set_terminated(run.info.run_id)
    name = scope.registry.model_name
    version = register_model.fn(run.info.run_id, folder, name, {}).version
    promote.fn(name, version, "test champion")


def test_bench_decoding_writes_its_figures(tmp_path: Path) -> None:
    from bench.decoding import main
    from flows.augment import augment
    from flows.ingest import ingest

    scope = tiny_scope(tmp_path / "ws")
    augmented = augment(scope, ingest(scope))
    _register_champion(scope, augmented, tmp_path / "rec")
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
