"""The labelling loop and the next round's scope, on hand-built prediction logs."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from data_contracts.labels import transcription_result
from data_contracts.scoping import MIN_CORPUS_UTTERANCES, AugmentationPolicy, Scope
from tasks.labelling import import_labels, open_labelling_batch
from tasks.retraining import new_word_queries, next_policy, respeak_new_words, retrain_scope
from tests.production_log import production_log


def label(scope: Scope, log: pd.DataFrame, text: str = "who is zarina okonkwo") -> Path:
    """Open a batch from `log` and import a Label Studio export that labels every task but
    the third; the label file."""
    labelling_dir = scope.state.path("labelling_dir")
    audio_dir = scope.state.path("prediction_audio_dir")
    batch = open_labelling_batch.fn(log, labelling_dir, scope.labelling, audio_dir)
    assert batch is not None
    tasks = json.loads((batch.path / "tasks.json").read_text())
    for i, t in enumerate(tasks):
        t["annotations"] = [{"result": transcription_result(text)}] if i != 2 else []
    done = import_labels.fn(tasks, labelling_dir)
    assert len(done["label_files"]) == 1
    return Path(done["label_files"][0])


def test_next_policy_applies_only_known_keys() -> None:
    policy = AugmentationPolicy()
    out = next_policy(
        policy, {"policy": {"augmented_share": 0.7, "snr_db_max": 15.0, "unknown": 1}}
    )
    assert out.augmented_share == 0.7 and out.snr_db_max == 15.0
    assert next_policy(policy, {}) == policy


def test_retrain_scope_adds_labelled_batches(tmp_path: Path) -> None:
    scope = Scope().with_workspace(tmp_path)
    label(scope, production_log(tmp_path, 3))
    next_scope, changes = retrain_scope.fn(scope)
    added = [s for s in next_scope.sources if s.name.startswith("labelled-")]
    assert len(added) == 1 and added[0].kind == "csv"
    assert any("labelled production batch" in c for c in changes)


def test_new_word_queries_finds_unknown_words_once() -> None:
    texts = ["who is zarina okonkwo", "play jazz", "who is zarina okonkwo", "call mom"]
    queries, words = new_word_queries(texts, {"who", "is", "play", "jazz", "call"})
    assert queries == ["who is zarina okonkwo", "call mom"]
    assert words == ["zarina", "okonkwo", "mom"]


def test_respeak_adds_a_source_for_labelled_new_words_and_keeps_it(tmp_path: Path) -> None:
    scope = Scope().with_workspace(tmp_path)
    label(scope, production_log(tmp_path, 4))
    lexicon = {"who", "is", "play", "jazz"}
    next_scope, changes = respeak_new_words.fn(scope, lexicon)
    source = next(s for s in next_scope.sources if s.name == "respoken")
    assert source.synthetic is not None and source.synthetic.texts_file is not None
    assert source.synthetic.texts_file.read_text().splitlines() == ["who is zarina okonkwo"]
    assert source.synthetic.n_utterances == scope.labelling.respeak_voices
    assert source.synthetic.seed == scope.sources[0].synthetic.seed  # type: ignore[union-attr]
    assert "zarina" in changes[0] and "okonkwo" in changes[0]
    # a later champion knows the words: what was re-spoken stays in the data, once
    again, _ = respeak_new_words.fn(scope, lexicon | {"zarina", "okonkwo"})
    kept = next(s for s in again.sources if s.name == "respoken")
    assert kept.synthetic.texts_file.read_text().splitlines() == [  # type: ignore[union-attr]
        "who is zarina okonkwo"
    ]
    # switched off, or with no champion to compare against: no source
    off = scope.model_copy(
        update={"labelling": scope.labelling.model_copy(update={"respeak_voices": 0})}
    )
    assert respeak_new_words.fn(off, lexicon) == (off, [])
    assert respeak_new_words.fn(scope, set()) == (scope, [])


def test_respeak_also_speaks_listed_names_nobody_has_said_yet(tmp_path: Path) -> None:
    newsroom = tmp_path / "newsroom.txt"
    newsroom.write_text("oriane kolawole\nplay jazz\n")
    scope = Scope().with_workspace(tmp_path)
    scope = scope.model_copy(
        update={"training": scope.training.model_copy(update={"hot_words_file": newsroom})}
    )
    label(scope, production_log(tmp_path, 4))
    next_scope, changes = respeak_new_words.fn(scope, {"who", "is", "play", "jazz"})
    source = next(s for s in next_scope.sources if s.name == "respoken")
    assert source.synthetic.texts_file.read_text().splitlines() == [  # type: ignore[union-attr]
        "who is zarina okonkwo",
        "oriane kolawole",  # listed and unknown; "play jazz" is known: not spoken
    ]
    assert "oriane" in changes[0]


def test_one_text_by_two_voices_still_makes_a_corpus(tmp_path: Path) -> None:
    """A retrain with one new query and respeak_voices 2 (the command tour's scope) re-speaks
    it as a corpus of the smallest allowed size, not an invalid one of 2 clips."""
    scope = Scope().with_workspace(tmp_path)
    scope = scope.model_copy(
        update={"labelling": scope.labelling.model_copy(update={"respeak_voices": 2})}
    )
    label(scope, production_log(tmp_path, 4))
    next_scope, _ = respeak_new_words.fn(scope, {"who", "is", "play", "jazz"})
    source = next(s for s in next_scope.sources if s.name == "respoken")
    assert source.synthetic is not None
    assert source.synthetic.n_utterances == MIN_CORPUS_UTTERANCES
