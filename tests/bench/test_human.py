"""bench/human.py: the champion and the peer on real human recordings (alsa-utils' clips,
installed by the setup), with a synthetic control on the same phrases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.human import HUMAN_DIR, NoRecordings, human_recordings, word_shares
from tests.champions import register_champion
from tests.conftest import tiny_scope


def test_recordings_are_named_by_their_file_and_noise_is_left_out(tmp_path: Path) -> None:
    for name in ("Front_Left.wav", "Rear_Center.wav", "Noise.wav", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert human_recordings(tmp_path) == [
        (tmp_path / "Front_Left.wav", "front left"),
        (tmp_path / "Rear_Center.wav", "rear center"),
    ]


def test_a_folder_without_recordings_names_the_package_that_brings_them(tmp_path: Path) -> None:
    with pytest.raises(NoRecordings, match="alsa-utils"):
        human_recordings(tmp_path)


def test_word_shares_count_tokens_in_the_lexicon_and_the_vocabulary() -> None:
    shares = word_shares(["front left", "rear left"], {"left"}, {"left", "front"})
    assert shares == {"human_words_in_domain_share": 0.5, "human_words_in_vocabulary_share": 0.75}


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_server")
def test_bench_human_scores_ours_and_the_peer_on_the_same_recordings(tmp_path: Path) -> None:
    from bench.human import main

    assert len(human_recordings(HUMAN_DIR)) == 8  # the setup installs alsa-utils here
    scope = tiny_scope(tmp_path / "ws")
    register_champion(scope, tmp_path / "rec", ["play jazz music", "turn left"], int8=True)
    out = tmp_path / "results"

    figures = main(scope, out, voices_per_engine=1)

    saved = json.loads((out / "human.json").read_text())
    assert saved["human_clips"] == 8 and saved["quarantined"] == 0
    assert saved["model_version"] == figures["model_version"] == "1"
    # the per-clip hypotheses are the evaluate flow's: both WERs agree
    assert saved["wer_human"] == pytest.approx(saved["wer_human_evaluate"], abs=1e-3)
    refs = [clip["reference"] for clip in saved["clips"]]
    assert "front left" in refs and "side right" in refs
    # pocketsphinx hears real speech: far better than a random model, and it is scored
    assert 0 <= saved["peer_wer_human"] < saved["wer_human"]
    assert saved["peer_over_ours_human"] == pytest.approx(
        saved["peer_wer_human"] / saved["wer_human"], abs=1e-3
    )
    # the control: the same phrases by synthetic voices of each installed engine
    assert {"espeak", "flite", "festival-hts"} <= set(saved["wer_human_phrases_by_engine"])
    assert saved["wer_human_phrases_synthetic"] >= 0
    # of the recordings' words, only "left" (3 of 16) is in this champion's transcripts
    assert saved["human_words_in_domain_share"] == pytest.approx(3 / 16, abs=1e-3)
    assert saved["human_words_in_vocabulary_share"] == pytest.approx(3 / 16, abs=1e-3)
    assert not (scope.state.workspace / "bench" / "human").exists()  # scratch removed
