"""The data half of the cycle as real Prefect flows on a temporary Prefect server."""

from __future__ import annotations

from pathlib import Path

import pytest

from data_contracts.scoping import DataSource
from tests.conftest import tiny_scope

pytestmark = pytest.mark.usefixtures("prefect_server")


def test_ingest_then_augment_writes_versions_and_artifacts(tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client

    from flows.augment import augment
    from flows.ingest import ingest
    from tasks.augmentation import load_augmented
    from tasks.ingestion import load_dataset

    scope = tiny_scope(tmp_path / "ws")
    version = ingest(scope)
    dataset = load_dataset(scope.state.path("datasets_dir") / version)
    assert len(dataset) == 24
    assert set(dataset["split"]) == {"train", "dev", "test"}

    augmented = augment(scope, version)
    aug = load_augmented(scope.state.path("augmented_dir") / augmented)
    car = aug[aug["condition"] == "car"]
    assert len(car) > 0 and car["snr_db"].between(-5, 20).all()
    # every held-out clip has an in-car copy, so the in-car test slice is always measured
    held = dataset[dataset["split"] != "train"]
    assert set(held["utterance_id"] + "+car") <= set(car["utterance_id"])

    with get_client(sync_client=True) as client:
        keys = {a.key for a in client.read_artifacts()}
    assert {"ingestion-summary", "augmentation-summary"} <= keys

    # same input again: same versions, nothing rewritten
    assert ingest(scope) == version
    assert augment(scope, version) == augmented


def test_respoken_texts_join_the_corpus_with_their_own_ids_and_stable_splits(
    tmp_path: Path,
) -> None:
    from data_contracts.scoping import SyntheticCorpus
    from flows.ingest import ingest
    from tasks.ingestion import load_dataset

    scope = tiny_scope(tmp_path / "ws")
    base = load_dataset(scope.state.path("datasets_dir") / ingest(scope))
    texts = tmp_path / "texts.txt"
    texts.write_text("who is zarina okonkwo\nweather in paris\n")
    main = scope.sources[0].synthetic
    assert main is not None
    respoken = DataSource(
        kind="synthetic",
        name="respoken",
        synthetic=SyntheticCorpus(
            n_utterances=6, seed=main.seed, n_voices=main.n_voices, texts_file=texts
        ),
    )
    grown_scope = scope.model_copy(update={"sources": [*scope.sources, respoken]})
    grown = load_dataset(grown_scope.state.path("datasets_dir") / ingest(grown_scope))
    assert len(grown) == len(base) + 6  # nothing quarantined: ids do not collide
    added = grown[grown["source"] == "respoken"]
    assert added["utterance_id"].str.startswith("respoken-").all()
    assert set(added["transcript"]) == {"who is zarina okonkwo", "weather in paris"}
    # every voice keeps the split it had before the new source arrived
    before = dict(zip(base["voice"], base["split"], strict=True))
    after = dict(zip(grown["voice"], grown["split"], strict=True))
    assert all(after[v] == split for v, split in before.items())


def test_invalid_scope_fails_before_any_work(tmp_path: Path) -> None:
    from flows.ingest import ingest

    scope = tiny_scope(tmp_path / "ws")
    missing = DataSource(kind="csv", name="mine", path=tmp_path / "nope.csv")
    scope = scope.model_copy(update={"sources": [missing]})
    state = ingest(scope, return_state=True)
    assert state.is_failed()
    with pytest.raises(Exception, match=r"sources\[0\]\.path"):
        state.result()
    assert not scope.state.path("datasets_dir").exists()
