"""The synthetic voice-search corpus: queries, voices, synthesis and the corpus folder."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tasks.corpus import ENTITY_NAMES, INTENTS, Query, generate_queries
from tasks.synthesis import (
    MANIFEST_COLUMNS,
    MAX_PEAK,
    Voice,
    build_corpus,
    list_voices,
    render_utterance,
    synthesize,
)
from tasks.text import normalise_transcript

LABEL = re.compile(r"^[a-z']+( [a-z']+)*$")
M3 = Voice("espeak/en-us+m3", "espeak", "en-us", "m3", pitch=50, pitch_range=50, rate=175)
F2 = Voice("espeak/en-gb-x-rp+f2", "espeak", "en-gb-x-rp", "f2", pitch=50, pitch_range=50, rate=175)
TEXT = "what's the weather in paris tomorrow"


def _words(texts: list[str]) -> set[str]:
    return {w for t in texts for w in normalise_transcript(t).split()}


def _ltas_db(audio: np.ndarray) -> np.ndarray:
    """Long-term average spectrum of the voiced frames, in dB."""
    frames = audio[: len(audio) // 512 * 512].reshape(-1, 512) * np.hanning(512)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    energy = power.sum(axis=1)
    return 10 * np.log10(power[energy > energy.max() * 1e-3].mean(axis=0) + 1e-10)


# --- queries ------------------------------------------------------------------------------


def test_queries_are_deterministic_by_seed() -> None:
    first = generate_queries(60, seed=7)
    assert first == generate_queries(60, seed=7)
    assert first != generate_queries(60, seed=8)
    assert all(isinstance(q, Query) and q.era == "launch" for q in first)


def test_both_eras_appear_with_era_weights() -> None:
    queries = generate_queries(300, seed=3, era_weights={"launch": 1.0, "new": 1.0})
    eras = {q.era for q in queries}
    assert eras == {"launch", "new"}
    new_names = set(ENTITY_NAMES["new"])
    for q in queries:
        if q.era == "new":
            assert new_names & set(q.entities), q
        else:
            assert not new_names & set(q.entities), q


def test_new_era_names_are_never_heard_at_launch() -> None:
    assert len(ENTITY_NAMES["new"]) >= 40
    launch_vocab = _words(list(ENTITY_NAMES["launch"])) | _words(
        [q.text for q in generate_queries(3000, seed=11)]
    )
    new_vocab = _words(list(ENTITY_NAMES["new"]))
    assert not new_vocab & launch_vocab


def test_every_intent_appears_in_500_queries() -> None:
    assert len(INTENTS) >= 10
    assert {q.intent for q in generate_queries(500, seed=5)} == set(INTENTS)


def test_queries_are_written_form_that_normalises_to_valid_labels() -> None:
    queries = generate_queries(1000, seed=2, era_weights={"launch": 3.0, "new": 1.0})
    texts = [q.text for q in queries]
    assert any(re.search(r"\d", t) for t in texts)  # digits, spelled out only by normalisation
    assert any(t[0].isupper() for t in texts)
    spoken = [normalise_transcript(t, drop_fillers=()) for t in texts]
    assert 0.005 < np.mean([bool({"um", "uh"} & set(s.split())) for s in spoken]) < 0.08
    assert all(LABEL.match(normalise_transcript(t)) for t in texts)


def test_bad_era_weights_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown"):
        generate_queries(5, seed=0, era_weights={"future": 1.0})
    with pytest.raises(ValueError, match="positive sum"):
        generate_queries(5, seed=0, era_weights={"launch": 0.0})


# --- voices and synthesis -------------------------------------------------------------------


def test_default_voice_list_is_deterministic_and_varied() -> None:
    voices = list_voices(seed=0)
    assert voices == list_voices(seed=0)
    assert 60 <= len(voices) <= 110
    assert len({v.voice_id for v in voices}) == len(voices)
    assert {"espeak", "espeak-klatt"} <= {v.synthesizer for v in voices}
    assert len({v.language for v in voices}) >= 5
    assert list_voices(seed=0, n=10) == voices[:10]


def test_synthesize_returns_plausible_audio() -> None:
    audio = synthesize(TEXT, M3, 16000)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert np.all(np.isfinite(audio)) and np.max(np.abs(audio)) <= 1.0
    assert 0.3 <= len(audio) / 16000 <= 8.0


def test_two_voices_sound_different() -> None:
    a, again, b = (synthesize(TEXT, v, 16000) for v in (M3, M3, F2))
    same = np.sqrt(np.mean((_ltas_db(a) - _ltas_db(again)) ** 2))
    different = np.sqrt(np.mean((_ltas_db(a) - _ltas_db(b)) ** 2))
    assert same < 1.0 < 3.0 < different


def test_unknown_variant_is_an_error_not_a_silent_fallback() -> None:
    bogus = Voice("espeak/en-us+nosuch", "espeak", "en-us", "nosuch", 50, 50, 175)
    with pytest.raises(ValueError, match="nosuch"):
        synthesize(TEXT, bogus, 16000)


def test_render_utterance_adds_silence_gain_and_noise_floor() -> None:
    rng = np.random.default_rng(0)
    audio = render_utterance(TEXT, M3, 16000, rng)
    assert audio.dtype == np.float32
    assert np.max(np.abs(audio)) <= MAX_PEAK + 1e-6
    lead = audio[: int(0.04 * 16000)]  # always silence: at least 50 ms is prepended
    lead_db = 20 * np.log10(np.sqrt(np.mean(lead**2)))
    assert -100 < lead_db < -50  # a faint floor, not digital silence
    assert len(audio) > len(synthesize(TEXT, M3, 16000)) * 0.8


# --- the corpus folder ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("corpus") / "c6"
    assert build_corpus(out, 6, seed=4, era_weights={"launch": 1.0, "new": 1.0}, n_shards=2) == out
    return out


def _rows(folder: Path) -> list[dict[str, str]]:
    with (folder / "manifest.csv").open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_build_corpus_writes_audio_and_manifest(corpus: Path) -> None:
    rows = _rows(corpus)
    assert len(rows) == 6 and tuple(rows[0]) == MANIFEST_COLUMNS
    assert len(list((corpus / "audio").glob("*.wav"))) == 6
    for row in rows:
        info = sf.info(corpus / row["audio_path"])
        assert info.samplerate == 16000 and info.channels == 1 and info.subtype == "PCM_16"
        assert 0.3 < info.duration < 10
        assert row["era"] in ("launch", "new") and row["synthesizer"].startswith("espeak")
    assert not [p for p in corpus.parent.iterdir() if ".partial-" in p.name]


def test_build_corpus_is_identical_with_another_shard_count(corpus: Path, tmp_path: Path) -> None:
    other = build_corpus(
        tmp_path / "c6",
        6,
        seed=4,
        era_weights={"launch": 1.0, "new": 1.0},
        n_shards=1,
    )
    assert (other / "manifest.csv").read_bytes() == (corpus / "manifest.csv").read_bytes()
    for row in _rows(corpus):
        path = row["audio_path"]
        assert (other / path).read_bytes() == (corpus / path).read_bytes(), path


def test_build_corpus_reuses_a_folder_with_the_same_parameters(corpus: Path) -> None:
    stamps = {p: p.stat().st_mtime_ns for p in corpus.rglob("*")}
    build_corpus(corpus, 6, seed=4, era_weights={"new": 1.0, "launch": 1.0})
    assert {p: p.stat().st_mtime_ns for p in corpus.rglob("*")} == stamps


def test_build_corpus_refuses_other_parameters_or_foreign_folders(
    corpus: Path, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="another folder"):
        build_corpus(corpus, 6, seed=5, era_weights={"launch": 1.0, "new": 1.0})
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="another folder"):
        build_corpus(foreign, 6, seed=4)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]


def test_build_corpus_speaks_given_texts_with_other_voices(tmp_path: Path) -> None:
    texts = ["who is zarina okonkwo", "play jazz"]
    out = build_corpus(tmp_path / "t", 4, seed=4, texts=texts, id_prefix="said")
    rows = _rows(out)
    assert [r["transcript"] for r in rows] == texts * 2
    assert [r["utterance_id"] for r in rows] == [f"said-{i:06d}" for i in range(4)]
    assert {r["era"] for r in rows} == {"respoken"}
    assert rows[0]["voice"] != rows[2]["voice"]  # each round by other voices
    # other texts are another corpus: never written over this one
    with pytest.raises(ValueError, match="another folder"):
        build_corpus(out, 4, seed=4, texts=["call mom"], id_prefix="said")


# --- the query tables (package data a scope can replace) ------------------------------------


def test_packaged_tables_feed_the_queries() -> None:
    from tasks.corpus import load_tables

    tables = load_tables()
    assert tables.intents == INTENTS and "weather" in INTENTS
    assert tables.entity_names() == ENTITY_NAMES
    assert set(ENTITY_NAMES["new"]).isdisjoint(ENTITY_NAMES["launch"])


def test_own_templates_replace_the_packaged_ones(tmp_path: Path) -> None:
    from tasks.corpus import load_tables

    own = tmp_path / "templates.yaml"
    own.write_text("weather:\n- Weather in {city} on {day}\n")
    tables = load_tables(own)
    queries = generate_queries(20, seed=1, tables=tables)
    assert {q.intent for q in queries} == {"weather"}
    assert all(q.text.startswith("Weather in ") for q in queries)
    assert tables.sha256 != load_tables().sha256


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("weather:\n- Weather in {town}\n", r"weather item 1 .*unknown slot\(s\) \['town'\]"),
        ("weather:\n- Fine\n- 3\n", r"weather item 2: expected text"),
        ("weather: []\n", r"weather: expected a non-empty list"),
        ("weather: [unclosed\n", "not valid YAML"),
    ],
)
def test_malformed_templates_name_the_file_and_row(tmp_path: Path, text: str, message: str) -> None:
    from tasks.corpus import TablesError, load_tables

    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    with pytest.raises(TablesError, match=message) as caught:
        load_tables(bad)
    assert str(bad) in str(caught.value)


def test_malformed_entities_name_the_file_and_row(tmp_path: Path) -> None:
    from tasks.corpus import TablesError, load_tables

    bad = tmp_path / "entities.yaml"
    bad.write_text(
        "eras:\n  launch:\n    city: [Paris, 7]\n  new:\n    celebrity: [Zed]\nplain: {}\n"
    )
    with pytest.raises(TablesError, match=r"eras\.launch\.city item 2: expected text"):
        load_tables(None, bad)


def test_a_scope_with_its_own_templates_gets_its_own_corpus_folder(tmp_path: Path) -> None:
    from data_contracts.scoping import DataSource, SyntheticCorpus
    from tasks.sources import corpus_dir_for, plan_synthetic_corpus

    own = tmp_path / "templates.yaml"
    own.write_text("weather:\n- Weather in {city}\n")
    plain = SyntheticCorpus(n_utterances=4, seed=2, n_voices=2)
    mine = plain.model_copy(update={"templates_file": own})
    a = DataSource(kind="synthetic", name="s", synthetic=plain)
    b = DataSource(kind="synthetic", name="s", synthetic=mine)
    assert corpus_dir_for(a, tmp_path, ["espeak"]) != corpus_dir_for(b, tmp_path, ["espeak"])
    plan = plan_synthetic_corpus.fn(b, tmp_path / "corpus", 1)
    assert all(u.query.text.startswith("Weather in ") for u in plan.utterances)
    assert "tables_sha256" in plan.params


def test_general_english_sentences_lie_outside_the_voice_search_templates() -> None:
    from tasks.corpus import general_sentences

    sentences = general_sentences(80, seed=1)
    assert sentences == general_sentences(80, seed=1) and len(sentences) == 80
    assert len(set(sentences)) >= 50  # the pool, shuffled and cycled
    labels = [normalise_transcript(s) for s in sentences]
    assert all(LABEL.match(t) for t in labels)
    query_words = _words([q.text for q in generate_queries(2000, seed=0)])
    general_words = _words(sentences)
    assert len(general_words - query_words) >= 0.5 * len(general_words)


def test_general_english_training_utterances_are_spoken_by_training_voices_only(
    tmp_path: Path,
) -> None:
    """They widen what the acoustic model hears (the open vocabulary) without a test voice
    ever speaking training material, and the word LM never sees their word salad."""
    import pandas as pd

    from data_contracts.scoping import DataSource, SplitPolicy, SyntheticCorpus
    from tasks.corpus import GENERAL_INTENT, general_training_queries
    from tasks.error_analysis import evaluation_rows
    from tasks.ingestion import voice_split
    from tasks.sources import corpus_dir_for, plan_synthetic_corpus
    from tasks.training import training_sets

    lexicon = {"weather": 3.0, "nm": 9.0, "a": 9.0, "garden": 1.0, "yellow": 2.0}
    drawn = general_training_queries(40, 3, lexicon)
    assert drawn == general_training_queries(40, 3, lexicon)  # deterministic
    words = {w for q in drawn for w in q.text.split()}
    assert words <= {"weather", "garden", "yellow"}  # no vowel-less acronym, no one-letter word
    assert all(3 <= len(q.text.split()) <= 8 and q.intent == GENERAL_INTENT for q in drawn)

    split = SplitPolicy(test_share=0.3, dev_share=0.2, seed=1)
    plain = SyntheticCorpus(n_utterances=12, seed=2, n_voices=8, engines=["espeak"])
    wider = plain.model_copy(update={"general_utterances": 10})
    source = DataSource(kind="synthetic", name="s", synthetic=wider)
    assert corpus_dir_for(source, tmp_path, ["espeak"]) != corpus_dir_for(
        DataSource(kind="synthetic", name="s", synthetic=plain), tmp_path, ["espeak"]
    )
    other_split = split.model_copy(update={"seed": 2})  # other training voices: another corpus
    assert corpus_dir_for(source, tmp_path, ["espeak"], split) != corpus_dir_for(
        source, tmp_path, ["espeak"], other_split
    )
    plan = plan_synthetic_corpus.fn(source, tmp_path / "corpus", 1, split)
    general = [u for u in plan.utterances if u.query.intent == GENERAL_INTENT]
    assert len(plan.utterances) == 22 and len(general) == 10
    assert {voice_split(u.voice.voice_id, split) for u in general} == {"train"}
    assert plan.params["general_utterances"] == 10
    assert len({u.utterance_id for u in plan.utterances}) == 22
    with pytest.raises(ValueError, match="split policy"):
        plan_synthetic_corpus.fn(source, tmp_path / "other", 1)

    manifest = pd.DataFrame(
        {
            "utterance_id": ["a", "b", "c"],
            "split": ["train", "train", "dev"],
            "condition": ["clean", "clean", "clean"],
            "intent": ["weather", GENERAL_INTENT, "weather"],
            "transcript": ["weather in paris", "garden yellow weather", "weather in rome"],
        }
    )
    train_ids, dev_ids, lm_texts = training_sets(manifest)
    assert train_ids == ["a", "b"] and dev_ids == ["c"]  # the acoustic model hears both
    assert lm_texts == ["weather in paris"]
    # train error is measured on queries only: the word runs would read as under-fitting
    assert list(evaluation_rows(manifest, seed=0)["utterance_id"]) == ["c", "a"]


def test_a_voice_lent_to_an_empty_split_speaks_no_general_english(tmp_path: Path) -> None:
    """assign_splits lends the lowest-drawn training voice to a split a small set left empty:
    that voice speaks no general-English run, so every one of them still lands in training."""
    import pandas as pd

    from data_contracts.scoping import DataSource, SplitPolicy, SyntheticCorpus
    from tasks.corpus import GENERAL_INTENT
    from tasks.ingestion import assign_splits, voice_split
    from tasks.sources import plan_synthetic_corpus
    from tasks.synthesis import list_voices

    voices = [v.voice_id for v in list_voices(seed=2, n=6, engines=["espeak"])]
    # a policy under which no voice draws test by its hash alone, so one is lent to it
    split = next(
        policy
        for seed in range(200)
        if "test"
        not in {
            voice_split(v, policy := SplitPolicy(test_share=0.05, dev_share=0.3, seed=seed))
            for v in voices
        }
    )
    corpus = SyntheticCorpus(
        n_utterances=12, seed=2, n_voices=6, engines=["espeak"], general_utterances=24
    )
    source = DataSource(kind="synthetic", name="s", synthetic=corpus)
    plan = plan_synthetic_corpus.fn(source, tmp_path / "corpus", 1, split)
    rows = pd.DataFrame(
        {
            "voice": [u.voice.voice_id for u in plan.utterances],
            "synthesizer": [u.voice.synthesizer for u in plan.utterances],
            "intent": [u.query.intent for u in plan.utterances],
        }
    )
    rows["split"] = assign_splits(rows, split)
    assert "test" in set(rows["split"])  # the lending applied
    assert set(rows.loc[rows["intent"] == GENERAL_INTENT, "split"]) == {"train"}
