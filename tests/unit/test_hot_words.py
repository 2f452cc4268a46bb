"""Hot words: mining new names from typed queries, the versioned list, the simulated feed and
names brought from a file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data_contracts.hot_words import (
    HotWordList,
    HotWordListError,
    latest_list,
    latest_lists,
    read_list,
    write_list,
)
from data_contracts.scoping import HotWordsScope
from models.text import edit_distance, snap_to_phrases
from tasks.corpus import ENTITY_NAMES, generate_queries
from tasks.hot_words import (
    mine_new_names,
    mined_texts,
    new_word_runs,
    publish_hot_words,
    read_typed_queries,
)
from tasks.simulated_queries import (
    NamesFileError,
    read_names_file,
    simulated_typed_queries,
    tables_with_new_names,
)
from tasks.text import normalise_transcript

RULES = HotWordsScope()
# names nobody in the project has used: the feed and the traffic must take them from a file
UNSEEN = ["Wendeline Quarrington", "Horatio Blixen-Mbeki", "Cordula Farnsworth"]


def launch_lexicon() -> set[str]:
    """Every word of a large launch-era sample: what a launch model can say."""
    texts = [normalise_transcript(q.text) for q in generate_queries(3000, 1)]
    return {w for t in texts for w in t.split()}


def test_runs_of_new_words_become_phrases_and_noise_runs_are_dropped() -> None:
    lexicon = {"who", "is", "news", "about", "and"}
    assert new_word_runs("who is zarina okonkwo", lexicon, RULES) == ["zarina okonkwo"]
    assert new_word_runs("news about ab and cordula", lexicon, RULES) == ["cordula"]  # "ab": short
    assert new_word_runs("qzv kkrt plom wuzz", lexicon, RULES) == []  # four new words: a mash
    assert edit_distance("farnsworth", "farnswort", 2) == 1
    assert edit_distance("abc", "xyzabc", 2) == 3  # past the limit: limit + 1


def test_snapping_replaces_a_run_of_name_words_only_when_a_listed_name_is_close() -> None:
    names = ["fenella quartermaine", "oriane kolawole", "esperanza lindgren moss"]

    def snap(text: str) -> str:
        return snap_to_phrases(text, names, 0.5)

    assert snap("song by fenella oriane") == "song by fenella quartermaine"
    assert snap("starring kolawole lindgren moss") == "starring esperanza lindgren moss"
    # one word of a three-word name is too far from the name: left as heard
    assert snap("news about moss") == "news about moss"
    assert snap("play jazz near me") == "play jazz near me"  # no name words: untouched
    assert snap_to_phrases("by fenella oriane", names, 0.0) == "by fenella oriane"  # off
    assert snap_to_phrases("by fenella oriane", [], 0.5) == "by fenella oriane"


def test_mining_finds_the_recurring_new_names_and_filters_the_noise() -> None:
    names = list(ENTITY_NAMES["new"])
    queries = simulated_typed_queries(names, 1500, seed=5)
    mined = mine_new_names(queries, launch_lexicon(), RULES)
    truth = {w for n in names for w in normalise_transcript(n).split()}
    found = {w for p in mined.phrases for w in p.split()}
    assert len(found & truth) >= 0.9 * len(truth)  # most new-name words are heard
    noise = found - truth
    assert len(noise) <= 0.05 * len(found), sorted(noise)  # misspellings, one-offs mostly out
    assert mined.candidates > len(mined.phrases)  # there was noise to filter
    top = mined.phrases[0]
    assert mined.counts[top] >= RULES.min_count and mined.examples[top]
    assert all(top in example for example in mined.examples[top])


def test_a_rare_misspelling_of_a_frequent_name_is_not_a_name() -> None:
    tails = ("today", "now", "again", "please", "online", "live", "here", "there", "first")
    queries = [f"who is wendeline quarrington {t}" for t in tails]
    queries += [f"wendeline quarringten news {t}" for t in tails[:3]]  # recurs, but a slip
    queries += [f"pictures of lorvak timbo {t}" for t in tails[:3]]  # a distinct name
    mined = mine_new_names(queries, {"who", "is", "news", "pictures", "of", *tails}, RULES)
    assert mined.phrases == ("wendeline quarrington", "lorvak timbo")


def _list(version: str = "1", phrases: tuple[str, ...] = ("cordula farnsworth",)) -> HotWordList:
    return HotWordList(model_name="m", model_version=version, version=1, phrases=list(phrases))


def test_lists_are_versioned_per_model_version_and_never_rewritten(tmp_path: Path) -> None:
    first = write_list(tmp_path, _list())
    second = write_list(tmp_path, _list(phrases=("cordula farnsworth", "horatio blixen")))
    assert (first.name, second.name) == ("1.json", "2.json")
    assert read_list(first).phrases == ["cordula farnsworth"]  # the old version is kept
    latest = latest_list(tmp_path, "m", "1")
    assert latest is not None and latest.label == "1.2"
    assert latest_list(tmp_path, "m", "7") is None
    write_list(tmp_path, _list(version="2", phrases=("wendeline quarrington",)))
    assert [x.label for x in latest_lists(tmp_path, "m")] == ["1.2", "2.1"]


def test_a_broken_list_file_names_the_file_and_field(tmp_path: Path) -> None:
    path = write_list(tmp_path, _list())
    data = json.loads(path.read_text())
    data["phrases"] = ["Not Normalised"]
    path.write_text(json.dumps(data))
    with pytest.raises(HotWordListError, match=r"1\.json: phrases: .*phrase 0"):
        read_list(path)
    with pytest.raises(ValueError, match="lowercase words"):
        _list(phrases=("UPPER",))


def test_publish_writes_only_when_the_names_change_and_keeps_earlier_names(
    tmp_path: Path,
) -> None:
    queries = [f"who is cordula farnsworth {w}" for w in ("today", "now", "again")]
    mined = mine_new_names(queries, {"who", "is", "today", "now", "again"}, RULES)
    listed, written = publish_hot_words.fn(tmp_path, "m", "3", mined, "feed.txt", RULES)
    assert written is not None and listed.label == "3.1"
    assert listed.phrases == ["cordula farnsworth"]
    again, none = publish_hot_words.fn(tmp_path, "m", "3", mined, "feed.txt", RULES)
    assert none is None and again.label == "3.1"
    later = mine_new_names(
        [f"horatio blixen {w}" for w in ("today", "now", "again")],
        {"today", "now", "again"},
        RULES,
    )
    merged, path = publish_hot_words.fn(tmp_path, "m", "3", later, "feed.txt", RULES)
    assert path is not None and merged.label == "3.2"
    assert set(merged.phrases) == {"cordula farnsworth", "horatio blixen"}
    # what the retrain re-speaks: the names and the typed queries that held them
    texts = mined_texts(tmp_path, "m")
    assert "cordula farnsworth" in texts and "who is cordula farnsworth today" in texts


def test_typed_queries_come_from_a_file_and_a_missing_one_is_named(tmp_path: Path) -> None:
    (tmp_path / "feed.txt").write_text("Who is Cordula?\n\n  news  \n")
    assert read_typed_queries.fn("feed.txt", tmp_path) == ["Who is Cordula?", "news"]
    with pytest.raises(ValueError, match="nope.txt"):
        read_typed_queries.fn(str(tmp_path / "nope.txt"), tmp_path)


def test_names_from_a_file_fill_every_new_era_slot(tmp_path: Path) -> None:
    names_file = tmp_path / "names.txt"
    names_file.write_text("# my people\n" + "\n".join(UNSEEN) + "\n\nCordula Farnsworth\n")
    names = read_names_file(names_file)
    assert names == UNSEEN  # comments, blanks and repeats dropped
    tables = tables_with_new_names(names)
    queries = generate_queries(60, 3, {"new": 1.0}, tables)
    assert {e for q in queries for e in q.entities} <= set(UNSEEN)
    assert {e for q in queries for e in q.entities} == set(UNSEEN)
    bad = tmp_path / "bad.txt"
    bad.write_text("Ada Lovelace\nR2D2\n")
    with pytest.raises(NamesFileError, match="line 2"):
        read_names_file(bad)


def test_the_feed_of_unseen_names_mines_back_to_those_names() -> None:
    queries = simulated_typed_queries(UNSEEN, 400, seed=11)
    mined = mine_new_names(queries, launch_lexicon(), RULES)
    words = {w for p in mined.phrases for w in p.split()}
    assert {"wendeline", "quarrington", "horatio", "blixen", "mbeki", "cordula"} <= words


def test_a_list_in_force_widens_the_beam_and_counts_its_queries_into_the_lm() -> None:
    from models.decoder import BeamDecoder, WordLM

    lm = WordLM.from_transcripts(["who is sarah collins", "play jazz"])
    listed = HotWordList(
        model_name="m",
        model_version="1",
        version=1,
        phrases=["cordula farnsworth"],
        examples={"cordula farnsworth": ["who is cordula farnsworth"]},
        decoder={"beam_size": 48, "hot_word_bonus": 6.0},
    )
    decoder = BeamDecoder(lm).with_hot_words(listed.phrases, listed.context, listed.decoder)
    assert decoder.settings.beam_size == 48 and decoder.settings.hot_word_bonus == 6.0
    assert decoder.lm is not None and decoder.lm.bigram_counts["is"]["cordula"] == 1
    assert lm.bigram_counts["is"] == {"sarah": 1}  # the stored LM is left as it was
    assert "cordula farnsworth" in decoder.hot_words
    with pytest.raises(ValueError, match="unknown decoder settings"):
        HotWordList(model_name="m", model_version="1", version=1, phrases=[], decoder={"x": 1})


def test_traffic_speaks_the_names_of_a_file() -> None:
    from tasks.simulation import SCENARIOS, make_clips
    from tasks.synthesis import list_voices

    clips = make_clips(SCENARIOS["new-names"], 4, list_voices(seed=13)[:2], seed=2, names=UNSEEN)
    spoken = {normalise_transcript(n) for n in UNSEEN}
    assert all(any(name in c.reference for name in spoken) for c in clips)
    assert all(c.wav_bytes[:4] == b"RIFF" for c in clips)
