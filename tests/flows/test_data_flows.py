"""The data half of the cycle as real Prefect flows on a temporary Prefect server."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

import pytest
import soundfile as sf

from data_contracts.scoping import DataSource, Scope
from tests.conftest import tiny_scope

pytestmark = pytest.mark.usefixtures("prefect_server")


def _two_workers(scope: Scope) -> Scope:
    """The scope with a fan-out of two worker processes."""
    runtime = scope.runtime.model_copy(update={"task_runner": "processes", "max_workers": 2})
    return scope.model_copy(update={"runtime": runtime})


def _task_runs(flow_run_ids: list[UUID], task_name: str, expected: int) -> int:
    """Completed task runs of task_name in these flow runs, waiting (up to 30 s) for `expected`:
    the server records task runs from events, a moment after the flow returns."""
    import time

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    found = 0
    deadline = time.monotonic() + 30
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=flow_run_ids))
            )
            found = sum(
                1
                for r in runs
                if r.name.startswith(task_name) and r.state is not None and r.state.is_completed()
            )
            if found >= expected or time.monotonic() > deadline:
                return found
            time.sleep(0.5)


def _shard_runs(parent_flow_run_id: UUID, task_name: str, expected: int) -> int:
    """Completed task runs of task_name in the subflows of a flow run."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    with get_client(sync_client=True) as client:
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent_flow_run_id])
            )
        )
    return _task_runs([c.id for c in children], task_name, expected)


def test_ingest_then_augment_writes_versions_and_artifacts(tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client

    from flows.augment import augment
    from flows.ingest import ingest
    from tasks.augmentation import load_augmented
    from tasks.ingestion import load_dataset

    scope = _two_workers(tiny_scope(tmp_path / "ws"))
    state = ingest(scope, return_state=True)
    version = state.result()
    # probing fanned out: one task run per shard, in the Prefect UI
    assert _shard_runs(state.state_details.flow_run_id, "probe-audio-shard", 2) == 2
    dataset = load_dataset(scope.state.path("datasets_dir") / version)
    assert len(dataset) == 24
    assert set(dataset["split"]) == {"train", "dev", "test"}

    aug_state = augment(scope, version, return_state=True)
    augmented = aug_state.result()
    assert _shard_runs(aug_state.state_details.flow_run_id, "mix-car-noise-shard", 2) == 2
    aug = load_augmented(scope.state.path("augmented_dir") / augmented)
    car = aug[aug["condition"] == "car"]
    assert len(car) > 0 and car["snr_db"].between(-5, 20).all()
    # every held-out clip has an in-car copy, so the in-car test slice is always measured
    held = dataset[dataset["split"] != "train"]
    assert set(held["utterance_id"] + "+car") <= set(car["utterance_id"])
    # acoustic chains are recorded per copy; a speed-perturbed copy's duration is its own
    assert aug.loc[aug["condition"] == "clean", "acoustics"].eq("none").all()
    assert car["acoustics"].ne("").all()
    chained = aug[aug["acoustics"].str.contains("speed=")]
    for row in chained.head(3).itertuples():
        seconds = sf.info(scope.state.path("augmented_dir") / augmented / row.audio_path).duration
        assert seconds == pytest.approx(row.duration_s, abs=0.01)

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


def test_synthesis_shards_are_task_runs_and_the_audio_does_not_depend_on_workers(
    tmp_path: Path,
) -> None:
    import json

    from flows.ingest import synthesise_corpus
    from tasks.fanout import max_workers, task_runner

    hashes = []
    for runner, workers in (("processes", 1), ("processes", 2), ("threads", 2)):
        scope = tiny_scope(tmp_path / f"ws-{runner}{workers}", n_utterances=30, n_voices=4)
        runtime = scope.runtime.model_copy(update={"task_runner": runner, "max_workers": workers})
        scope = scope.model_copy(update={"runtime": runtime})
        state = synthesise_corpus.with_options(task_runner=task_runner(scope))(
            scope.sources[0], scope.state.path("corpus_dir"), max_workers(scope), return_state=True
        )
        manifest = state.result()
        hashes.append(json.loads((manifest.parent / "corpus.json").read_text())["content_sha256"])
        shard_runs = _task_runs([state.state_details.flow_run_id], "synthesise-shard", workers)
        assert shard_runs == workers  # 30 utterances: two blocks of 24, one shard per worker
    assert hashes[0] == hashes[1] == hashes[2]


def test_a_failed_synthesis_shard_fails_the_flow_and_leaves_no_partial_folder(
    tmp_path: Path,
) -> None:
    from data_contracts.scoping import SyntheticCorpus
    from flows.ingest import synthesise_corpus

    texts = tmp_path / "texts.txt"
    texts.write_text("play jazz\n???\n")  # "???" has nothing left to speak after normalisation
    source = DataSource(
        kind="synthetic",
        name="broken",
        synthetic=SyntheticCorpus(n_utterances=4, seed=1, n_voices=2, texts_file=texts),
    )
    corpus_root = tmp_path / "corpus"
    state = synthesise_corpus(source, corpus_root, 1, return_state=True)
    assert state.is_failed()
    # nothing but the workspace's voice-catalogue pin (tasks/synthesis/catalogue.py)
    assert [p.name for p in corpus_root.iterdir() if not p.name.startswith("catalogue-")] == []
