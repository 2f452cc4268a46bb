"""Turning CTC log-probabilities into text: greedy, and beam search with a word n-gram LM.

Both decoders return, per utterance, ``(text, confidence)``. Confidence is defined the same
way for both: the mean, over the letters of the output (the frame at which each letter is
emitted in the CTC path; word separators excluded), of the posterior of that letter at that
frame. For an empty output it is the mean posterior of the blank over the valid frames, i.e.
how sure the model is that nothing was said.

The beam decoder is torchaudio's (flashlight's) lexicon CTC decoder over the LM's words plus hot
words. The word LM (models/language_model.py, plain Python) is written out as an ARPA file
(bigram or trigram), hot-word bonuses included, and scored by flashlight's KenLM in C++: the
search calls the LM about ten thousand times a clip, and through a Python callback those calls
took two thirds of the decoding time.
"""

from __future__ import annotations

import itertools
import math
import os
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from flashlight.lib.text.decoder import (
    CriterionType,
    KenLM,
    LexiconDecoderOptions,
)
from flashlight.lib.text.dictionary import Dictionary, load_words
from torchaudio.models.decoder import CTCDecoder, CTCHypothesis, ctc_decoder

from models.language_model import BOS, EOS, LM_FORMAT, WORD_PATTERN, WordLM
from models.text import BLANK_ID, SPACE_ID, VOCAB, decode, snap_to_phrases

__all__ = [
    "BOS",
    "EOS",
    "LM_FORMAT",
    "WORD_PATTERN",
    "BeamDecoder",
    "BeamSettings",
    "GreedyDecoder",
    "WordLM",
]

UNK = "<unk>"

# flashlight's conventions: the word separator ("silence") token is "|", and the blank needs
# a name of its own. Our space (index 1) becomes "|"; indices are unchanged.
SIL_TOKEN = "|"
HOT_PHRASE_LOG_PROB = math.log(0.5)
LN10 = math.log(10.0)  # our LM scores are natural logs, ARPA files and KenLM's are log10
# what KenLM prints (from C++, to stderr) while it reads an ARPA file
_KENLM_CHATTER = ("Loading the LM will be faster", "Reading ", "----5---10", "*****")
DECODER_TOKENS: list[str] = [SIL_TOKEN if s == " " else s for s in VOCAB]


def _check_emissions(log_probs: torch.Tensor, lengths: torch.Tensor) -> None:
    if log_probs.ndim != 3 or log_probs.shape[2] != len(VOCAB):
        raise ValueError(
            f"expected log_probs of shape (B, T, {len(VOCAB)}), got {tuple(log_probs.shape)}"
        )
    if lengths.shape != (log_probs.shape[0],):
        raise ValueError(
            f"expected lengths of shape ({log_probs.shape[0]},), got {tuple(lengths.shape)}"
        )


def path_confidence(log_probs: torch.Tensor, tokens: Sequence[int], frames: Sequence[int]) -> float:
    """Confidence of one decoded path; see the module docstring.

    ``log_probs`` is (T, V) for the valid frames, ``tokens``/``frames`` are the emitted
    (collapsed) tokens and the frame at which each is emitted.
    """
    letter_frames = [f for tok, f in zip(tokens, frames, strict=True) if tok != SPACE_ID]
    letters = [tok for tok in tokens if tok != SPACE_ID]
    if not letters:
        if log_probs.shape[0] == 0:
            return 1.0
        return float(log_probs[:, BLANK_ID].exp().mean())
    picked = log_probs[torch.tensor(letter_frames), torch.tensor(letters)]  # (N,)
    return float(picked.exp().mean())


def _clean(text: str) -> str:
    return " ".join(text.split())


class GreedyDecoder:
    """Best path: argmax per frame, merge repeats, drop blanks."""

    @torch.inference_mode()
    def decode(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[tuple[str, float]]:
        _check_emissions(log_probs, lengths)
        best = log_probs.argmax(dim=-1).cpu()  # (B, T)
        log_probs = log_probs.cpu()
        results: list[tuple[str, float]] = []
        for b in range(log_probs.shape[0]):
            n = int(lengths[b])
            path = best[b, :n].tolist()
            tokens: list[int] = []
            frames: list[int] = []
            previous = BLANK_ID
            for t, tok in enumerate(path):
                if tok != previous and tok != BLANK_ID:
                    tokens.append(tok)
                    frames.append(t)
                previous = tok
            results.append(
                (_clean(decode(tokens)), path_confidence(log_probs[b, :n], tokens, frames))
            )
        return results


def write_arpa(
    lm: WordLM,
    words: Sequence[str],
    bonus: Mapping[str, float],
    phrase_pairs: Iterable[tuple[str, str]],
    path: Path,
) -> float:
    """The search's LM as an ARPA file (log10; bigram or trigram, as the LM is), for KenLM;
    returns the shift, in natural log per word, that was taken off every score.

    Every word (the lexicon's, ``</s>``, ``<unk>``) gets its P_cont, every pair seen in the
    transcripts its P(w | v) and every triple its P(w | u v), all exactly as ``WordLM`` scores
    them, with the word's hot-word bonus added; each word's (and each trigram history's)
    backoff weight carries the unseen ones. Inside a hot phrase ("kamala" -> "harris") the next
    word is likely, whatever the LM, which never saw the pair: those pairs, and the triples
    that end in them, get at least HOT_PHRASE_LOG_PROB. KenLM refuses positive log
    probabilities, which a bonus can give: every score is then shifted down by one constant per
    word, and the caller adds it back to the word score (the search ranks the same).
    """
    hot_pairs = set(phrase_pairs)
    scores = {w: lm.continuation_log_prob(w) + bonus.get(w, 0.0) for w in [*words, EOS, UNK]}
    pairs: dict[tuple[str, str], float] = {}
    for v, followers in lm.bigram_counts.items():
        for w in followers:
            pairs[(v, w)] = lm.log_prob(v, w) + bonus.get(w, 0.0)
    for v, w in hot_pairs:
        pairs[(v, w)] = max(lm.log_prob(v, w), HOT_PHRASE_LOG_PROB) + bonus.get(w, 0.0)
    triples: dict[tuple[str, str, str], float] = {}
    for (u, v), followers in lm.trigram_counts.items():
        for w in followers:
            triples[(u, v, w)] = lm.trigram_log_prob(u, v, w) + bonus.get(w, 0.0)
    phrase_next: dict[str, list[str]] = {}
    for v, w in hot_pairs:
        phrase_next.setdefault(v, []).append(w)
    for u, v in lm.trigram_counts:  # seen histories that end inside a hot phrase
        for w in phrase_next.get(v, ()):
            score = max(lm.trigram_log_prob(u, v, w), HOT_PHRASE_LOG_PROB)
            triples[(u, v, w)] = score + bonus.get(w, 0.0)
    shift = max(0.0, *scores.values(), *pairs.values(), *triples.values())

    def pair_line(v: str, w: str, p: float) -> str:
        line = f"{(p - shift) / LN10:.7f}\t{v} {w}"
        if (v, w) in lm.trigram_counts:
            line += f"\t{lm.trigram_backoff_log_prob(v, w) / LN10:.7f}"
        return line

    lines = [
        "\\data\\",
        f"ngram 1={len(scores) + 1}",
        f"ngram 2={len(pairs)}",
        *([f"ngram 3={len(triples)}"] if triples else []),
        "",
        "\\1-grams:",
        f"-99\t{BOS}\t{lm.backoff_log_prob(BOS) / LN10:.7f}",
    ]
    lines += [
        f"{(p - shift) / LN10:.7f}\t{w}\t{lm.backoff_log_prob(w) / LN10:.7f}"
        for w, p in scores.items()
    ]
    lines += ["", "\\2-grams:"]
    lines += [pair_line(v, w, p) for (v, w), p in pairs.items()]
    if triples:
        lines += ["", "\\3-grams:"]
        lines += [f"{(p - shift) / LN10:.7f}\t{u} {v} {w}" for (u, v, w), p in triples.items()]
    lines += ["", "\\end\\", ""]
    path.write_text("\n".join(lines))
    return shift


class _TrieKenLM(KenLM):
    """KenLM, and what torchaudio's trie construction sees of it (it asks from Python).

    The trie holds each word's score for pruning inside words (smearing): from the empty
    context (P_cont and the bonus), as the Python LM gave it, not P(w | <s>) (that cost 0.015
    WER in-domain), and without `write_arpa`'s shift, which would otherwise weigh on every
    word being spelled until its end (that cost hot-word decoding 0.03 WER on new names). The
    search calls KenLM's own start and score from C++: from ``<s>``, shifted, with the shift
    added back through the word score when a word ends.
    """

    def __init__(self, path: str, word_dict: Dictionary, shift: float) -> None:
        super().__init__(path, word_dict)
        self.shift10 = shift / LN10

    def start(self, start_with_nothing: bool) -> Any:
        return super().start(True)

    def score(self, state: Any, usr_token_idx: int) -> tuple[Any, float]:
        next_state, score = super().score(state, usr_token_idx)
        return next_state, score + self.shift10


def _load_kenlm(arpa: Path, word_dict: Dictionary, shift: float) -> KenLM:
    """KenLM reading an ARPA file, its progress lines kept off stderr (anything else another
    thread wrote there meanwhile is passed on)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            return _TrieKenLM(str(arpa), word_dict, shift)
        finally:  # also when KenLM fails: what others wrote meanwhile still goes out
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            lines = capture.read().decode(errors="replace").splitlines(keepends=True)
            other = [line for line in lines if not line.startswith(_KENLM_CHATTER)]
            if other:
                sys.stderr.write("".join(other))


@dataclass
class BeamSettings:
    """Search settings. LM scores are natural logs (torchaudio's examples tune lm_weight for
    KenLM's log10, about 2.3x larger). Defaults picked on a synthetic voice-search set: a wider
    beam gained nothing there, and a hot-word bonus of 2-8 scored alike."""

    beam_size: int = 16
    beam_size_token: int = 8  # tokens tried per frame (the best ones)
    beam_threshold: float = 15.0  # drop hypotheses this far (log) below the best
    lm_weight: float = 1.0
    word_score: float = 0.0  # added per word
    sil_score: float = 0.0
    hot_word_bonus: float = 3.0  # log-bonus on each hot word's LM score
    # the share of that bonus a hot word gets when the lexicon already holds it ("moss",
    # "bell" in a name): a full bonus pushes such common words into every query
    known_hot_word_share: float = 0.5
    # a run of hot-phrase words is snapped to the listed phrase nearest in spelling when
    # within this many character edits per letter (0: off); see models.text.snap_to_phrases
    hot_phrase_snap: float = 0.5
    lexicon_free: bool = False  # spell anything, no LM: for when the lexicon is too narrow

    def __post_init__(self) -> None:
        for name in ("beam_size", "beam_size_token", "beam_threshold"):
            if getattr(self, name) <= 0:
                raise ValueError(f"expected {name} > 0, got {getattr(self, name)}")
        for name in ("known_hot_word_share", "hot_phrase_snap"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"expected 0 <= {name} <= 1, got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> BeamSettings:
        known = set(cls.__dataclass_fields__)
        unknown = set(values) - known
        if unknown:
            raise ValueError(
                f"unknown beam settings {sorted(unknown)}; expected a subset of {sorted(known)}"
            )
        return cls(**values)


def normalise_hot_words(hot_words: Iterable[str]) -> tuple[str, ...]:
    """Hot words or phrases -> sorted unique phrases with single spaces, each word checked."""
    phrases: set[str] = set()
    for phrase in hot_words:
        words = phrase.split()
        for word in words:
            if not WORD_PATTERN.match(word):
                raise ValueError(
                    f"hot word {word!r} (in {phrase!r}) must be lowercase a-z and apostrophes"
                )
        if words:
            phrases.add(" ".join(words))
    return tuple(sorted(phrases))


class BeamDecoder:
    """Lexicon beam search with the word n-gram LM; hot words extend the lexicon.

    Words outside the lexicon (LM words + hot words) cannot be output; with
    ``settings.lexicon_free`` the search spells freely instead, without an LM.
    """

    def __init__(
        self,
        lm: WordLM | None,
        hot_words: Sequence[str] = (),
        settings: BeamSettings | None = None,
        known_words: Iterable[str] | None = None,
    ) -> None:
        self.lm = lm
        self.settings = settings if settings is not None else BeamSettings()
        self.hot_words = normalise_hot_words(hot_words)  # phrases
        self.hot_word_set = frozenset(w for phrase in self.hot_words for w in phrase.split())
        # the lexicon before any hot-word context was counted into the LM (default: the LM's)
        self.known_words = frozenset(
            known_words if known_words is not None else (lm.words if lm is not None else ())
        )
        self._decoder = self._build()

    def _build(self) -> CTCDecoder:
        s = self.settings
        common: dict[str, Any] = dict(
            tokens=DECODER_TOKENS,
            beam_size=s.beam_size,
            beam_size_token=min(s.beam_size_token, len(VOCAB)),
            beam_threshold=s.beam_threshold,
            sil_score=s.sil_score,
            blank_token=VOCAB[BLANK_ID],
            sil_token=SIL_TOKEN,
            unk_word=UNK,
        )
        if s.lexicon_free:
            return ctc_decoder(lexicon=None, lm=None, lm_weight=0.0, **common)
        if self.lm is None:
            raise ValueError(
                "a lexicon beam decoder needs a WordLM; got lm=None "
                "(pass an LM, or BeamSettings(lexicon_free=True))"
            )
        known = set(self.lm.words)
        words = [*self.lm.words, *sorted(self.hot_word_set - known)]
        if not words:
            raise ValueError("expected an LM with at least one word, or hot words; got neither")
        bonus = {
            w: s.hot_word_bonus * (s.known_hot_word_share if w in self.known_words else 1.0)
            for w in self.hot_word_set
        }
        pairs = frozenset(
            pair for phrase in self.hot_words for pair in itertools.pairwise(phrase.split())
        )
        with tempfile.TemporaryDirectory(prefix="voicecycle-lexicon-") as tmp:
            arpa = Path(tmp) / "lm.arpa"
            shift = write_arpa(self.lm, words, bonus, pairs, arpa)
            lexicon = Path(tmp) / "lexicon.txt"
            # No trailing "|": our model emits spaces between words, not after the last.
            lexicon.write_text("".join(f"{w} {' '.join(w)}\n" for w in words))
            lm_dict = Path(tmp) / "lm_dict.txt"  # fixes LM indices to our order
            lm_dict.write_text("".join(f"{w}\n" for w in [*words, UNK]))
            word_dict = Dictionary(str(lm_dict))
            kenlm = _load_kenlm(arpa, word_dict, shift)
            options = LexiconDecoderOptions(
                beam_size=s.beam_size,
                beam_size_token=min(s.beam_size_token, len(VOCAB)),
                beam_threshold=s.beam_threshold,
                lm_weight=s.lm_weight * LN10,  # the same weight on log10 scores
                word_score=s.word_score + s.lm_weight * shift,  # the shift added back
                unk_score=float("-inf"),
                sil_score=s.sil_score,
                log_add=False,
                criterion_type=CriterionType.CTC,
            )
            return CTCDecoder(
                nbest=1,
                lexicon=load_words(str(lexicon)),
                word_dict=word_dict,
                tokens_dict=Dictionary(DECODER_TOKENS),
                lm=kenlm,
                decoder_options=options,
                blank_token=VOCAB[BLANK_ID],
                sil_token=SIL_TOKEN,
                unk_word=UNK,
            )

    def with_hot_words(
        self,
        hot_words: Sequence[str],
        context: Sequence[str] = (),
        settings: dict[str, Any] | None = None,
    ) -> BeamDecoder:
        """This decoder with more hot words; `context`: sentences that hold them, counted
        into the LM; `settings`: BeamSettings fields to change (e.g. a wider beam)."""
        lm = self.lm.with_texts(context) if context and self.lm is not None else self.lm
        changed = BeamSettings.from_dict({**self.settings.to_dict(), **(settings or {})})
        return BeamDecoder(lm, [*self.hot_words, *hot_words], changed, self.known_words)

    def _text(self, hypothesis: CTCHypothesis) -> str:
        if self.settings.lexicon_free:
            return _clean(decode(int(t) for t in hypothesis.tokens))
        return snap_to_phrases(
            " ".join(hypothesis.words), self.hot_words, self.settings.hot_phrase_snap
        )

    @torch.inference_mode()
    def decode(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[tuple[str, float]]:
        _check_emissions(log_probs, lengths)
        emissions = log_probs.detach().float().cpu().contiguous()  # (B, T, V)
        lengths = lengths.cpu()
        results: list[tuple[str, float]] = []
        for b, hypotheses in enumerate(self._decoder(emissions, lengths)):
            n = int(lengths[b])
            if not hypotheses:  # everything pruned: nothing trustworthy was said
                results.append(("", path_confidence(emissions[b, :n], [], [])))
                continue
            best = hypotheses[0]
            tokens = [int(t) for t in best.tokens]
            frames = [int(t) for t in best.timesteps]
            # flashlight's path has a silence sentinel before frame 0 and after the last
            # frame, and torchaudio's timesteps index that path: frame = timestep - 1.
            kept = [(tok, f - 1) for tok, f in zip(tokens, frames, strict=True) if 0 < f <= n]
            confidence = path_confidence(
                emissions[b, :n], [tok for tok, _ in kept], [f for _, f in kept]
            )
            results.append((self._text(best), confidence))
        return results
