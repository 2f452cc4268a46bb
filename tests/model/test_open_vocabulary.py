"""The open vocabulary: a general English background joins the word LM below the in-domain
words, so any common word can be output while the domain's phrasing still wins."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from models.decoder import BeamDecoder, WordLM
from models.recognizer import Recognizer
from tasks.lexicon import general_lexicon
from tests.model.test_model import LM_TEXTS, spelled, tiny_model

BACKGROUND = {"the": 0.05, "garden": 1e-4, "gardens": 5e-5, "weather": 2e-4, "zebra": 1e-6}


def test_the_background_adds_words_below_in_domain_ones_and_round_trips() -> None:
    closed = WordLM.from_transcripts(LM_TEXTS)
    lm = WordLM.from_transcripts(LM_TEXTS, background=BACKGROUND, background_weight=0.05)
    assert lm.domain_words == closed.domain_words == closed.words
    assert {"garden", "zebra"} <= set(lm.words) and "garden" not in closed.words
    # an in-domain word keeps nearly its closed-vocabulary score; a general one is far below
    for word in ("weather", "paris"):
        assert lm.continuation_log_prob(word) >= closed.continuation_log_prob(word) + math.log(0.95)
    assert lm.log_prob("in", "paris") > lm.log_prob("in", "garden") + 3
    assert lm.log_prob("in", "garden") > lm.log_prob("in", "zebra")  # by frequency
    again = WordLM.from_dict(json.loads(json.dumps(lm.to_dict())))
    assert again.words == lm.words and again.background_weight == 0.05
    assert again.log_prob("in", "garden") == pytest.approx(lm.log_prob("in", "garden"), rel=1e-3)
    # hot-word context keeps the background
    assert "garden" in lm.with_texts(["who is kamala harris"]).words
    # an LM saved before the background reads back closed
    assert "background" not in closed.to_dict()
    with pytest.raises(ValueError, match="background_weight"):
        WordLM.from_transcripts(LM_TEXTS, background=BACKGROUND, background_weight=1.0)
    with pytest.raises(ValueError, match="lowercase"):
        WordLM.from_transcripts(LM_TEXTS, background={"Garden": 1.0}, background_weight=0.1)


def test_a_general_word_is_output_only_with_the_background() -> None:
    log_probs = spelled("weather in the garden")
    lengths = torch.tensor([log_probs.shape[1]])
    closed = BeamDecoder(WordLM.from_transcripts(LM_TEXTS))
    assert "garden" not in closed.decode(log_probs, lengths)[0][0]
    lm = WordLM.from_transcripts(LM_TEXTS, background=BACKGROUND, background_weight=0.05)
    assert BeamDecoder(lm).decode(log_probs, lengths)[0][0] == "weather in the garden"
    # where the audio is in-domain, the domain word wins
    paris = spelled("weather in paris")
    assert BeamDecoder(lm).decode(paris, torch.tensor([paris.shape[1]]))[0][0] == (
        "weather in paris"
    )


def test_the_lexicon_stays_in_domain_while_the_vocabulary_is_open(tmp_path: Path) -> None:
    lm = WordLM.from_transcripts(LM_TEXTS, background=BACKGROUND, background_weight=0.05)
    recognizer = Recognizer(tiny_model(), BeamDecoder(lm, hot_words=["zelensky"]))
    assert {"garden", "zebra", "zelensky", "paris"} <= recognizer.vocabulary
    assert "garden" not in recognizer.lexicon and {"zelensky", "paris"} <= recognizer.lexicon
    recognizer.save(tmp_path)
    assert Recognizer.read_lexicon(tmp_path) == recognizer.lexicon
    assert Recognizer.load(tmp_path).vocabulary == recognizer.vocabulary


def test_the_general_lexicon_is_large_spellable_and_ranked() -> None:
    words = general_lexicon(20000)
    assert len(words) == 20000
    assert all(w.replace("'", "").isalpha() and w.islower() and w.isascii() for w in words)
    ranked = list(words)
    assert ranked[0] == "the" and words["the"] > words[ranked[-1]] > 0
    assert {"garden", "kitchen", "window", "bread"} <= set(words)
    assert general_lexicon(0) == {}


def test_the_background_weight_sets_a_general_words_share() -> None:
    """A word only the background knows scores by the weight (it takes none of the domain's
    unseen-word mass, which a hot word keeps); 30,000 such words once each got that mass, and
    the weight did nothing."""
    low = WordLM.from_transcripts(LM_TEXTS, background=BACKGROUND, background_weight=0.01)
    high = WordLM.from_transcripts(LM_TEXTS, background=BACKGROUND, background_weight=0.05)
    closed = WordLM.from_transcripts(LM_TEXTS)
    for word in ("garden", "zebra"):
        gap = high.continuation_log_prob(word) - low.continuation_log_prob(word)
        assert gap == pytest.approx(math.log(5), abs=1e-6)
    # a word neither knows (a hot word) keeps the closed LM's unseen-word score
    assert high.continuation_log_prob("zelensky") == pytest.approx(
        closed.continuation_log_prob("zelensky") + math.log(0.95)
    )
