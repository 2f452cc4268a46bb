"""The voice catalogue is reproducible: never "whatever is installed right now".

Engines are part of a corpus's identity (its params, manifest and folder); a workspace pins
its catalogue; an existing corpus is reused as it is; a missing engine is an error naming it.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from data_contracts.scoping import DataSource, SyntheticCorpus
from tasks.synthesis import (
    ENGINES,
    build_corpus,
    discard_partial,
    finish_corpus,
    list_voices,
    plan_corpus,
    synthesise_shard,
    voice_from_id,
)
from tasks.synthesis.catalogue import pin_path, pinned_engines


def _uninstall(monkeypatch: pytest.MonkeyPatch, *engines: str) -> None:
    """Make this process see `engines` as not installed (the real check, fed nothing)."""
    for engine in engines:
        monkeypatch.setattr(f"tasks.synthesis.voices.{engine}_voices", lambda: ())


def _source(n_voices: int, engines: list[str] | None = None) -> DataSource:
    syn = SyntheticCorpus(n_utterances=4, seed=5, n_voices=n_voices)
    if engines is not None:
        syn = syn.model_copy(update={"engines": engines})
    return DataSource(kind="synthetic", name="synthetic", synthetic=syn)


def test_the_catalogue_does_not_depend_on_what_is_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    installed = list_voices(seed=13)
    _uninstall(monkeypatch, "flite", "festival")
    assert list_voices(seed=13) == installed
    engines = {v.voice_id.split("/")[0] for v in installed}
    assert engines == set(ENGINES)
    assert {"festival-hts", "flite", "festival", "espeak-klatt"} <= {
        v.synthesizer for v in installed
    }
    # small pools (the tests' tiny scopes) stay espeak-only
    assert all(v.synthesizer.startswith("espeak") for v in installed[:10])
    espeak_only = list_voices(seed=13, engines=("espeak",))
    assert [v for v in installed if v.voice_id.startswith("espeak/")] == espeak_only[:96]


def test_a_voice_id_gives_back_its_catalogue_voice() -> None:
    for voice in list_voices(seed=13):
        assert voice_from_id(voice.voice_id, 13) == voice
    with pytest.raises(ValueError, match="production:abc"):
        voice_from_id("production:abc", 13)


def test_a_workspace_pins_its_catalogue_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    requested = ["espeak", "flite", "festival"]
    with monkeypatch.context() as m:
        _uninstall(m, "flite")
        assert pinned_engines(tmp_path, requested) == ("espeak", "festival")
        line = capsys.readouterr().out
        assert "left out: flite" in line and line.count("\n") == 1
    # flite installed afterwards: the pin holds, and one line says how to change it
    assert pinned_engines(tmp_path, requested) == ("espeak", "festival")
    assert "installed now: flite" in capsys.readouterr().out
    assert json.loads(pin_path(tmp_path, requested).read_text())["engines"] == [
        "espeak",
        "festival",
    ]
    # another request is another catalogue, resolved on its own
    assert pinned_engines(tmp_path, ["espeak", "flite"]) == ("espeak", "flite")


def test_installing_an_engine_reuses_the_existing_corpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.sources import plan_synthetic_corpus

    root = tmp_path / "corpus"
    source = _source(n_voices=12)  # the 11th voice of the pool is flite's
    with monkeypatch.context() as m:
        _uninstall(m, "flite", "festival")
        first = plan_synthetic_corpus.fn(source, root, 1)
    assert first.params["engines"] == ["espeak"]
    assert not any(u.voice.synthesizer == "flite" for u in first.utterances)
    for shard in first.shards:
        synthesise_shard.fn(first.audio_dir, first.seed, first.sample_rate, shard)
    finish_corpus.fn(first)
    again = plan_synthetic_corpus.fn(source, root, 1)  # flite and festival are installed now
    assert again.reused and again.out_dir == first.out_dir  # no "different parameters"
    # asking for another catalogue gives a corpus beside it, never over it
    other = plan_synthetic_corpus.fn(_source(20, engines=["espeak", "flite"]), root, 1)
    assert other.out_dir != first.out_dir and other.out_dir.parent == root
    assert "flite" in other.params["engines"]


def test_a_new_corpus_after_an_engine_was_removed_is_spoken_without_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tasks.sources import plan_synthetic_corpus

    root = tmp_path / "corpus"
    syn = SyntheticCorpus(n_utterances=17, seed=5, n_voices=17, engines=["espeak", "flite"])
    source = DataSource(kind="synthetic", name="synthetic", synthetic=syn)  # 17th voice: flite
    full = plan_synthetic_corpus.fn(source, root, 1)  # pins espeak+flite
    assert any(u.voice.synthesizer == "flite" for u in full.utterances)
    discard_partial(full)
    capsys.readouterr()
    with monkeypatch.context() as m:
        _uninstall(m, "flite")
        without = plan_synthetic_corpus.fn(source, root, 1)
        line = capsys.readouterr().out
    # rendered, not refused: flite's voice speaks none of it, and the folder says so
    assert "rendered with no clips of flite" in line and line.count("\n") == 1
    assert not any(u.voice.synthesizer == "flite" for u in without.utterances)
    assert without.out_dir.name.endswith("espeak+flite0-" + full.out_dir.name.split("flite-")[1])
    assert without.out_dir != full.out_dir
    # the other voices keep their order and prosody: the pool is the pinned one
    assert without.params["voices"] == full.params["voices"]
    for shard in without.shards:
        synthesise_shard.fn(without.audio_dir, without.seed, without.sample_rate, shard)
    finish_corpus.fn(without)
    # installed again: that corpus is still there as it was, a new one hears flite again
    assert plan_synthetic_corpus.fn(source, root, 1).out_dir == full.out_dir
    assert capsys.readouterr().out == ""
    assert (without.out_dir / "manifest.csv").is_file()


def test_an_existing_corpus_is_reused_without_its_engine_and_a_new_one_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kal, slt = voice_from_id("flite/kal", 3), voice_from_id("festival/cmu_us_slt_arctic_hts", 3)
    out = build_corpus(tmp_path / "c", 2, 3, voices=[kal, slt])
    with (out / "manifest.csv").open() as f:
        assert {r["synthesizer"] for r in csv.DictReader(f)} == {"flite", "festival-hts"}
    info = json.loads((out / "corpus.json").read_text())
    assert info["params"]["engines"] == ["flite", "festival"]
    assert set(info["engine_versions"]) == {"flite", "festival"}
    _uninstall(monkeypatch, "flite", "festival")
    assert plan_corpus(out, 2, 3, voices=[kal, slt]).reused  # reused as it is
    with pytest.raises(ValueError, match=r"needs the flite engine .*not installed"):
        plan_corpus(tmp_path / "new", 2, 3, voices=[kal, slt])


def test_simulated_held_out_voices_are_those_of_the_dataset_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.simulation import production_voices

    version = tmp_path / "ds-0123456789ab"
    version.mkdir()
    rows = [
        ("espeak/en-us+m3", "test"),
        ("flite/slt", "test"),
        ("production:abc", "test"),
        ("espeak/en+f2", "train"),
        ("festival/cmu_us_slt_arctic_hts", "cross_synth"),
    ]
    (version / "manifest.csv").write_text(
        "voice,split\n" + "".join(f"{v},{s}\n" for v, s in rows), encoding="utf-8"
    )
    held = production_voices(tmp_path, 13)
    _uninstall(monkeypatch, "flite", "festival")  # what is installed does not move them
    assert production_voices(tmp_path, 13) == held
    assert [v.voice_id for v in held] == ["espeak/en-us+m3", "flite/slt"]
    assert held[1] == voice_from_id("flite/slt", 13)


def test_an_engine_upgrade_keeps_the_existing_corpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine versions are recorded beside a corpus, not part of what it is: after an
    upgrade the corpus is reused as it is (its record still names the version it was built
    with), and only a new corpus records the new version."""
    voices = list_voices(seed=3, n=2, engines=("espeak",))
    out = build_corpus(tmp_path / "c", 2, 3, voices=voices)
    built = json.loads((out / "corpus.json").read_text())["engine_versions"]["espeak"]
    monkeypatch.setattr("tasks.synthesis.corpus_build.espeak_version", lambda: "espeak-ng 9.99")
    assert plan_corpus(out, 2, 3, voices=voices).reused
    assert json.loads((out / "corpus.json").read_text())["engine_versions"]["espeak"] == built
    fresh = build_corpus(tmp_path / "d", 2, 3, voices=voices)
    assert json.loads((fresh / "corpus.json").read_text())["engine_versions"] == {
        "espeak": "espeak-ng 9.99"
    }
