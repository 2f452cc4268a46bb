import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from models.ctc import AcousticModelConfig, CTCAcousticModel, ctc_loss, output_lengths
from models.decoder import BeamDecoder, BeamSettings, GreedyDecoder, WordLM
from models.features import (
    N_MELS,
    SAMPLE_RATE,
    LogMel,
    TrainTransform,
    ValTransform,
    collate,
    frames_for,
    pad_waveforms,
)
from models.recognizer import Recognizer
from models.text import BLANK_ID, VOCAB, encode

TINY = AcousticModelConfig(conv_channels=32, rnn_hidden=32, rnn_layers=2, dropout=0.0)
LM_TEXTS = ["who is taylor swift", "weather in paris", "call mom", "who is in paris"]


def tiny_model(seed: int = 0) -> CTCAcousticModel:
    torch.manual_seed(seed)
    return CTCAcousticModel(TINY).eval()


def sweep(seconds: float, f0: float, f1: float) -> torch.Tensor:
    t = torch.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    phase = 2 * math.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds))
    return 0.3 * torch.sin(phase)  # (S,)


def spelled(text: str, peak: float = 0.9, frames_per_char: int = 2) -> torch.Tensor:
    """Hand-made log-probs (1, T, V) whose best path spells ``text``."""
    path = [BLANK_ID, BLANK_ID]
    for token in encode(text):
        path += [token] * frames_per_char + [BLANK_ID]
    path += [BLANK_ID]
    probs = torch.full((len(path), len(VOCAB)), (1 - peak) / (len(VOCAB) - 1))
    probs[torch.arange(len(path)), torch.tensor(path)] = peak
    return probs.log()[None]


# -- features and model -------------------------------------------------------------------


def test_default_config_is_a_small_cpu_model() -> None:
    n = CTCAcousticModel(AcousticModelConfig()).num_parameters()
    assert 1_500_000 < n < 4_000_000


@pytest.mark.parametrize("num_samples", [0, 1, 160, 400, 8000, 12345])
def test_forward_shapes_and_lengths(num_samples: int) -> None:
    model = tiny_model()
    other = 16000
    audio, lengths = pad_waveforms([torch.randn(num_samples) * 0.1, torch.randn(other) * 0.1])
    features, feature_lengths = ValTransform()(audio, lengths)
    assert features.shape == (2, frames_for(max(num_samples, other)), N_MELS)
    assert feature_lengths.tolist() == [frames_for(num_samples), frames_for(other)]
    log_probs, out_lengths = model(features, feature_lengths)
    assert log_probs.shape == (2, int(out_lengths.max()), len(VOCAB))
    assert out_lengths.tolist() == output_lengths(feature_lengths).tolist()
    assert out_lengths[1] == math.ceil(math.ceil(frames_for(other) / 2) / 2)
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(2, log_probs.shape[1]), atol=1e-5)


def test_batched_output_matches_single_clip() -> None:
    """Padding must not leak into a clip's features or outputs; a clip alone (no padding:
    the GRU runs unpacked) gets what it gets in a padded batch (packed)."""
    model = tiny_model()
    short, long = torch.randn(5000) * 0.1, torch.randn(20000) * 0.1
    audio, lengths = pad_waveforms([short, long])
    transform = ValTransform()
    batch_lp, batch_len = model(*transform(audio, lengths))
    alone_lp, alone_len = model(*transform(short[None], torch.tensor([5000])))
    n = int(alone_len[0])
    assert batch_len[0] == n
    torch.testing.assert_close(batch_lp[0, :n], alone_lp[0], atol=1e-5, rtol=1e-4)


def test_log_mel_is_normalised_and_zero_on_padding() -> None:
    audio, lengths = pad_waveforms([torch.randn(8000), torch.randn(16000)])
    features = LogMel()(audio, lengths)  # (2, T, F)
    valid = features[0, : frames_for(8000)]
    assert valid.mean(0).abs().max() < 1e-4
    assert torch.all(features[0, frames_for(8000) :] == 0)


def test_spec_augment_only_in_training() -> None:
    torch.manual_seed(0)
    audio, lengths = pad_waveforms([torch.randn(32000) * 0.1])
    transform = TrainTransform()
    clean, _ = ValTransform()(audio, lengths)
    transform.eval()
    assert torch.equal(transform(audio, lengths)[0], clean)
    transform.train()
    masked, _ = transform(audio, lengths)
    assert (masked == 0).sum() > (clean == 0).sum()


def test_collate_pads_and_encodes() -> None:
    batch = collate([torch.zeros(1600), torch.zeros(3200)], ["hi", ""], ["a", "b"], ValTransform())
    assert batch.features.shape == (2, frames_for(3200), N_MELS)
    assert batch.targets.tolist() == [encode("hi"), [0, 0]]
    assert batch.target_lengths.tolist() == [2, 0]
    assert batch.utterance_ids == ("a", "b")
    with pytest.raises(ValueError, match="as many transcripts"):
        collate([torch.zeros(10)], ["a", "b"], ["x"], ValTransform())


def test_loss_decreases_when_overfitting_a_tiny_batch() -> None:
    torch.manual_seed(0)
    model = CTCAcousticModel(TINY).train()
    batch = collate(
        [sweep(0.8, 200, 2000), sweep(1.0, 3000, 500)], ["hi", "go on"], ["a", "b"], ValTransform()
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    losses = []
    for _ in range(20):
        log_probs, out_lengths = model(batch.features, batch.feature_lengths)
        loss = ctc_loss(log_probs, out_lengths, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(x) for x in losses)
    assert losses[-1] < 0.5 * losses[0]


# -- decoders -----------------------------------------------------------------------------


def test_greedy_decoder_text_and_confidence() -> None:
    log_probs = spelled("hi there", peak=0.8)
    [(text, confidence)] = GreedyDecoder().decode(log_probs, torch.tensor([log_probs.shape[1]]))
    assert text == "hi there"
    assert confidence == pytest.approx(0.8, abs=1e-5)


def test_empty_output_confidence_is_mean_blank_probability() -> None:
    probs = torch.full((1, 6, len(VOCAB)), 0.3 / (len(VOCAB) - 1))
    probs[:, :, BLANK_ID] = 0.7
    for decoder in (GreedyDecoder(), BeamDecoder(WordLM.from_transcripts(LM_TEXTS))):
        [(text, confidence)] = decoder.decode(probs.log(), torch.tensor([6]))
        assert text == ""
        assert confidence == pytest.approx(0.7, abs=1e-5)


def test_word_lm_round_trips_through_json_and_normalises() -> None:
    lm = WordLM.from_transcripts(LM_TEXTS)
    again = WordLM.from_dict(json.loads(json.dumps(lm.to_dict())))
    assert again.words == lm.words
    for previous in ["<s>", "who", "paris", "never-seen"]:
        total = sum(math.exp(lm.log_prob(previous, w)) for w in [*lm.words, "</s>"])
        assert 0.9 < total < 1.0  # the rest is kept for unseen words
        assert again.log_prob(previous, "is") == lm.log_prob(previous, "is")
    assert lm.log_prob("who", "is") > lm.log_prob("who", "paris")
    with pytest.raises(ValueError, match="normalised transcripts"):
        WordLM.from_transcripts(["Who is"])


def test_a_trigram_lm_hears_two_words_back_and_reads_old_bigram_files() -> None:
    texts = ["play the news", "read the book", "play the news again", "read the paper"]
    bigram = WordLM.from_transcripts(texts)
    trigram = WordLM.from_transcripts(texts, order=3)
    assert (bigram.order, trigram.order) == (2, 3)
    # after "the" alone, news and book are alike; after "play the", news is far ahead
    assert bigram.trigram_log_prob("play", "the", "news") == bigram.log_prob("the", "news")
    assert trigram.trigram_log_prob("play", "the", "news") > (
        trigram.trigram_log_prob("play", "the", "book") + 1.0
    )
    for history in [("play", "the"), ("never", "seen")]:
        total = sum(
            math.exp(trigram.trigram_log_prob(*history, w)) for w in [*trigram.words, "</s>"]
        )
        assert 0.9 < total < 1.0, history  # the rest is kept for unseen words
    assert trigram.sentence_log_prob("play the news") > bigram.sentence_log_prob("play the news")
    again = WordLM.from_dict(json.loads(json.dumps(trigram.to_dict())))
    assert again.trigram_counts == trigram.trigram_counts and again.order == 3
    # counting more sentences in keeps the order and adds their triples
    more = trigram.with_texts(["play the news now"])
    assert more.trigram_counts[("the", "news")] == {"</s>": 1, "again": 1, "now": 1}
    # a recogniser saved before trigrams (format 1) still loads, as the bigram it was
    old = {**bigram.to_dict(), "format": "voicecycle-word-bigram-kn/1"}
    del old["order"]
    assert WordLM.from_dict(old).order == 2
    with pytest.raises(ValueError, match="voicecycle-word-ngram-kn/2"):
        WordLM.from_dict({**old, "format": "something-else/9"})
    with pytest.raises(ValueError, match="order of 2 or 3"):
        WordLM.from_transcripts(texts, order=4)


@pytest.mark.parametrize("order", [2, 3])
def test_the_search_scores_with_exactly_the_word_lm_and_its_bonuses(
    tmp_path: Path, order: int
) -> None:
    """The ARPA file KenLM scores (in C++) gives every sentence the WordLM's log-probability,
    plus the hot-word bonuses and the hot-phrase floor, less one shift per word."""
    from flashlight.lib.text.decoder import KenLM
    from flashlight.lib.text.dictionary import Dictionary

    from models.decoder import HOT_PHRASE_LOG_PROB, LN10, write_arpa
    from models.language_model import EOS

    lm = WordLM.from_transcripts(
        [*LM_TEXTS, "call kamala now"],
        background={"banana": 3.0, "who": 1.0},
        background_weight=0.1,
        order=order,
    )
    words = [*lm.words, "harris"]  # a hot word the LM never saw
    bonus = {"kamala": 7.0, "harris": 7.0, "paris": 1.5}
    pairs = {("kamala", "harris")}
    shift = write_arpa(lm, words, bonus, pairs, tmp_path / "lm.arpa")
    assert shift > 0  # the phrase pair's bonus made a positive log-probability
    word_dict = Dictionary([*words, "<unk>"])
    kenlm = KenLM(str(tmp_path / "lm.arpa"), word_dict)

    def expected(sentence: str) -> float:
        tokens = ["<s>", *sentence.split(), EOS]
        total = 0.0
        for i in range(1, len(tokens)):
            v, w = tokens[i - 1], tokens[i]
            score = lm.log_prob(v, w) if i == 1 else lm.trigram_log_prob(tokens[i - 2], v, w)
            if (v, w) in pairs:
                score = max(score, HOT_PHRASE_LOG_PROB)
            total += score + bonus.get(w, 0.0) - shift
        return total

    for sentence in [
        "who is in paris",  # seen pairs
        "paris who banana",  # unseen pairs, a background-only word
        "call kamala harris",  # the hot phrase, after a seen trigram history
        "who kamala harris",  # the hot phrase after an unseen history
        "harris kamala mom",  # its words the other way round: no floor
        "who is paris",  # a seen triple
    ]:
        state, total = kenlm.start(False), 0.0
        for word in sentence.split():
            state, score = kenlm.score(state, word_dict.get_index(word))
            total += score
        _, score = kenlm.finish(state)
        assert (total + score) * LN10 == pytest.approx(expected(sentence), abs=1e-4), sentence


def test_hot_word_is_emitted_only_when_in_the_lexicon() -> None:
    lm = WordLM.from_transcripts(LM_TEXTS)
    log_probs = spelled("who is zelensky")
    lengths = torch.tensor([log_probs.shape[1]])
    [(without, _)] = BeamDecoder(lm).decode(log_probs, lengths)
    assert "zelensky" not in without
    [(with_hot, confidence)] = BeamDecoder(lm, hot_words=["zelensky"]).decode(log_probs, lengths)
    assert with_hot == "who is zelensky"
    assert confidence == pytest.approx(0.9, abs=1e-4)
    free = BeamDecoder(None, settings=BeamSettings(lexicon_free=True))
    assert free.decode(log_probs, lengths)[0][0] == "who is zelensky"


def test_hot_phrase_boosts_its_second_word() -> None:
    """After "kamala", "harris" beats the LM's "paris" only when the pair is a hot phrase."""
    probs = spelled("kamala harris").exp()  # (1, T, V)
    h_frames = (probs.argmax(-1)[0] == VOCAB.index("h")).nonzero().flatten()
    probs[0, h_frames, VOCAB.index("p")] = 0.9
    probs[0, h_frames, VOCAB.index("h")] = 0.02
    log_probs, lengths = probs.log(), torch.tensor([probs.shape[1]])
    lm = WordLM.from_transcripts(LM_TEXTS)
    settings = BeamSettings(lm_weight=1.0, hot_word_bonus=3.0)
    as_phrase = BeamDecoder(lm, ["kamala harris"], settings).decode(log_probs, lengths)
    as_words = BeamDecoder(lm, ["kamala", "harris"], settings).decode(log_probs, lengths)
    assert as_phrase[0][0] == "kamala harris"
    assert as_words[0][0] == "kamala paris"


def test_a_hot_word_the_lexicon_knows_gets_only_its_share_of_the_bonus() -> None:
    """ "bell" is an ordinary word ("ring the ball" or "ring the bell"): as a hot word it gets
    known_hot_word_share of the bonus, so a share of 0 leaves the acoustics to decide."""
    probs = spelled("ring the ball").exp()
    a_frames = (probs.argmax(-1)[0] == VOCAB.index("a")).nonzero().flatten()
    probs[0, a_frames, VOCAB.index("e")] = 0.4
    probs[0, a_frames, VOCAB.index("a")] = 0.5
    log_probs, lengths = probs.log(), torch.tensor([probs.shape[1]])
    lm = WordLM.from_transcripts([*LM_TEXTS, "ring the ball", "ring the bell"])

    def heard(share: float) -> str:
        settings = BeamSettings(hot_word_bonus=3.0, known_hot_word_share=share)
        return BeamDecoder(lm, ["bell"], settings).decode(log_probs, lengths)[0][0]

    assert heard(0.0) == "ring the ball"
    assert heard(1.0) == "ring the bell"
    with pytest.raises(ValueError, match="known_hot_word_share"):
        BeamSettings(known_hot_word_share=1.5)


def test_a_run_of_hot_phrase_words_is_snapped_to_the_nearest_listed_name() -> None:
    """The beam mixes two listed names ("fenella" + "oriane"); the run becomes one name."""
    log_probs = spelled("play fenella oriane")
    lengths = torch.tensor([log_probs.shape[1]])
    lm = WordLM.from_transcripts(["play jazz", "play the news"])
    names = ["fenella quartermaine", "oriane kolawole"]
    snapped = BeamDecoder(lm, names, BeamSettings(hot_phrase_snap=0.5))
    assert snapped.decode(log_probs, lengths)[0][0] == "play fenella quartermaine"
    as_heard = BeamDecoder(lm, names, BeamSettings(hot_phrase_snap=0.0))
    assert as_heard.decode(log_probs, lengths)[0][0] == "play fenella oriane"


def test_beam_decoder_splits_words_with_the_lexicon() -> None:
    log_probs = spelled("weatherinparis")  # no spaces emitted
    lengths = torch.tensor([log_probs.shape[1]])
    assert BeamDecoder(WordLM.from_transcripts(LM_TEXTS)).decode(log_probs, lengths)[0][0] == (
        "weather in paris"
    )


def test_hot_words_are_validated() -> None:
    with pytest.raises(ValueError, match="hot word"):
        BeamDecoder(WordLM.from_transcripts(LM_TEXTS), hot_words=["Zelensky"])


# -- recogniser ---------------------------------------------------------------------------


def beam_recognizer(seed: int = 0) -> Recognizer:
    lm = WordLM.from_transcripts(LM_TEXTS)
    return Recognizer(tiny_model(seed), BeamDecoder(lm, hot_words=["zelensky"]))


@pytest.mark.parametrize("num_samples", [0, 1, 160, 399])
@pytest.mark.parametrize("kind", ["greedy", "beam"])
def test_empty_and_very_short_clips_never_raise(num_samples: int, kind: str) -> None:
    recognizer = beam_recognizer() if kind == "beam" else Recognizer(tiny_model())
    rng = np.random.default_rng(0)
    clips = [
        np.zeros(num_samples, np.float32),
        (0.1 * rng.standard_normal(num_samples)).astype(np.float32),
    ]
    zeros, noise = recognizer.transcribe(clips)
    assert zeros.text == ""  # digital silence is never decoded
    assert isinstance(noise.text, str)
    assert 0.0 <= noise.confidence <= 1.0
    assert noise.duration_s == pytest.approx(num_samples / SAMPLE_RATE)


def test_blank_leaning_model_gives_empty_transcripts() -> None:
    model = tiny_model()
    with torch.no_grad():
        model.head.bias[BLANK_ID] += 30.0
    rng = np.random.default_rng(0)
    clips = [(0.05 * rng.standard_normal(n)).astype(np.float32) for n in (160, 16000)]
    beam = BeamDecoder(WordLM.from_transcripts(LM_TEXTS))
    for recognizer in (Recognizer(model), Recognizer(model, beam)):
        for result in recognizer.transcribe(clips):
            assert result.text == ""
            assert result.confidence > 0.99


def test_transcribe_keeps_order_across_batches() -> None:
    recognizer = Recognizer(tiny_model(), batch_size=2)
    rng = np.random.default_rng(1)
    clips = [
        (0.1 * rng.standard_normal(n)).astype(np.float32) for n in (16000, 3000, 9000, 500, 12000)
    ]
    together = recognizer.transcribe(clips)
    alone = [recognizer.transcribe([clip])[0] for clip in clips]
    assert [t.duration_s for t in together] == [len(c) / SAMPLE_RATE for c in clips]
    assert [t.text for t in together] == [t.text for t in alone]


def test_transcribe_rejects_bad_input() -> None:
    recognizer = Recognizer(tiny_model())
    with pytest.raises(ValueError, match="mono 1-D"):
        recognizer.transcribe([np.zeros((2, 100), np.float32)])
    with pytest.raises(ValueError, match="float samples"):
        recognizer.transcribe([np.zeros(100, np.int16)])
    with pytest.raises(ValueError, match="finite"):
        recognizer.transcribe([np.full(100, np.nan, np.float32)])


def test_save_load_round_trip(tmp_path: Path) -> None:
    recognizer = beam_recognizer()
    rng = np.random.default_rng(2)
    clips = [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in (16000, 7000)]
    recognizer.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "weights.pt"]
    loaded = Recognizer.load(tmp_path)
    assert loaded.hot_words == ("zelensky",)
    assert loaded.config_dict() == recognizer.config_dict()
    tensors = [torch.from_numpy(c) for c in clips]
    expected_lp, expected_len = recognizer.emissions(tensors)
    got_lp, got_len = loaded.emissions(tensors)
    assert torch.equal(got_len, expected_len)
    assert torch.equal(got_lp, expected_lp)
    assert loaded.transcribe(clips) == recognizer.transcribe(clips)


def test_load_rejects_a_different_vocabulary(tmp_path: Path) -> None:
    Recognizer(tiny_model()).save(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["vocab"] = [*config["vocab"][:3], "b", "a", *config["vocab"][5:]]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="vocabulary"):
        Recognizer.load(tmp_path)


def test_with_hot_words_extends_the_lexicon() -> None:
    recognizer = beam_recognizer().with_hot_words(["olena zelenska"])
    assert recognizer.hot_words == ("olena zelenska", "zelensky")
    with pytest.raises(ValueError, match="beam decoder"):
        Recognizer(tiny_model()).with_hot_words(["x"])


def test_int8_inference_is_close_to_float_and_saved_as_float(tmp_path: Path) -> None:
    recognizer = beam_recognizer()
    int8 = recognizer.with_int8()
    assert isinstance(int8.model.rnn, torch.ao.nn.quantized.dynamic.GRU)
    assert int8.float_model is recognizer.float_model  # same weights, nothing copied to save
    clips = [torch.from_numpy(sweep(1.0, 200, 3000).numpy()), sweep(0.6, 500, 900)]
    float_lp, lengths = recognizer.emissions(clips)
    int8_lp, int8_lengths = int8.emissions(clips)
    assert torch.equal(lengths, int8_lengths)
    assert (int8_lp.exp() - float_lp.exp()).abs().max() < 0.05  # posteriors barely move
    int8.save(tmp_path)
    saved = torch.load(tmp_path / "weights.pt", weights_only=True)
    assert all(v.dtype == torch.float32 for v in saved.values())
    loaded = Recognizer.load(tmp_path)
    assert loaded.int8 and torch.equal(loaded.emissions(clips)[0], int8_lp)
    assert not Recognizer.load(tmp_path).with_int8(False).int8
