"""The word language model of the beam decoder: a bigram with Kneser-Ney smoothing, and an
optional background unigram (general English) for an open vocabulary. Plain Python."""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

BOS = "<s>"
EOS = "</s>"
LM_FORMAT = "voicecycle-word-bigram-kn/1"
WORD_PATTERN = re.compile(r"^[a-z']+$")
_CACHE_LIMIT = 2_000_000  # (previous, word) scores kept before the cache starts over


class WordLM:
    """Word bigram LM, interpolated Kneser-Ney with an add-k continuation unigram.

    P(w | v) = max(c(v, w) - D, 0) / c(v) + D * N1+(v .) / c(v) * P_cont(w)
    P_cont(w) = (N1+(. w) + k) / (N1+(. .) + k * (|V| + 1))   (the +1 is for unseen words)

    so every word, including one never seen (a hot word), has a non-zero probability.
    Sentences are wrapped in ``<s>`` ... ``</s>``. Scores are natural logs.

    An open vocabulary: ``background`` (word -> relative frequency, e.g. general English)
    adds words the transcripts never held. The unigram level becomes
    ``(1 - background_weight) * P_cont(w) + background_weight * P_bg(w)``, so with a small
    weight a general word scores well below an in-domain one and in-domain phrasing keeps
    its accuracy, while any common word can still be output.
    """

    def __init__(
        self,
        bigram_counts: dict[str, dict[str, int]],
        discount: float = 0.75,
        add_k: float = 0.5,
        background: dict[str, float] | None = None,
        background_weight: float = 0.0,
    ) -> None:
        if not 0.0 < discount < 1.0:
            raise ValueError(f"expected a discount in (0, 1), got {discount}")
        if add_k <= 0.0:
            raise ValueError(f"expected add_k > 0, got {add_k}")
        if not 0.0 <= background_weight < 1.0:
            raise ValueError(f"expected a background_weight in [0, 1), got {background_weight}")
        self.bigram_counts = bigram_counts
        self.discount = discount
        self.add_k = add_k
        continuation: Counter[str] = Counter()
        for followers in bigram_counts.values():
            continuation.update(followers.keys())
        self._continuation = continuation
        self._history_total = {v: sum(f.values()) for v, f in bigram_counts.items()}
        self._bigram_types = sum(continuation.values())
        self._histories = set(bigram_counts) - {BOS}
        vocabulary = set(continuation) | self._histories
        # the words of the transcripts (what hot-word mining calls the model's lexicon)
        self.domain_words: tuple[str, ...] = tuple(sorted(vocabulary - {BOS, EOS}))
        self._denominator = self._bigram_types + add_k * (len(self.domain_words) + 2)
        self.background, self.background_weight = _background(background, background_weight)
        extra = set(self.background) - set(self.domain_words)
        self.words: tuple[str, ...] = tuple(sorted({*self.domain_words, *extra}))
        self._cache: dict[tuple[str, str], float] = {}

    @classmethod
    def from_transcripts(
        cls,
        texts: Iterable[str],
        discount: float = 0.75,
        add_k: float = 0.5,
        background: dict[str, float] | None = None,
        background_weight: float = 0.0,
    ) -> WordLM:
        counts: dict[str, Counter[str]] = defaultdict(Counter)
        for text in texts:
            words = text.split()
            if not words:
                continue
            for word in words:
                if not WORD_PATTERN.match(word):
                    raise ValueError(
                        f"expected normalised transcripts (words of a-z and '), got {word!r} "
                        f"in {text!r}"
                    )
            for v, w in zip([BOS, *words], [*words, EOS], strict=True):
                counts[v][w] += 1
        return cls(
            {v: dict(f) for v, f in counts.items()}, discount, add_k, background, background_weight
        )

    def with_texts(self, texts: Iterable[str]) -> WordLM:
        """This LM with the bigrams of more normalised sentences counted in (e.g. the typed
        queries that hold the hot words: the contexts new names are asked in)."""
        counts = {v: dict(f) for v, f in self.bigram_counts.items()}
        for v, followers in WordLM.from_transcripts(texts).bigram_counts.items():
            merged = counts.setdefault(v, {})
            for w, c in followers.items():
                merged[w] = merged.get(w, 0) + c
        return WordLM(counts, self.discount, self.add_k, self.background, self.background_weight)

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-able dict; ``WordLM.from_dict`` reads it back."""
        out: dict[str, Any] = {
            "format": LM_FORMAT,
            "discount": self.discount,
            "add_k": self.add_k,
            "bigram_counts": {
                v: dict(sorted(f.items())) for v, f in sorted(self.bigram_counts.items())
            },
        }
        if self.background:
            out["background_weight"] = self.background_weight
            # most frequent first, 4 significant digits: about 20 bytes a word
            ranked = sorted(self.background.items(), key=lambda kv: (-kv[1], kv[0]))
            out["background"] = {w: float(f"{p:.4g}") for w, p in ranked}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WordLM:
        if data.get("format") != LM_FORMAT:
            raise ValueError(
                f"expected an LM dict of format {LM_FORMAT!r}, got {data.get('format')!r}"
            )
        counts = {
            str(v): {str(w): int(c) for w, c in f.items()} for v, f in data["bigram_counts"].items()
        }
        background = data.get("background")
        return cls(
            counts,
            float(data["discount"]),
            float(data["add_k"]),
            {str(w): float(p) for w, p in background.items()} if background else None,
            float(data.get("background_weight", 0.0)),
        )

    def continuation_log_prob(self, word: str) -> float:
        """log of the lower-order (unigram-like) distribution, background included.

        A word only the background knows takes no share of the domain's add-k mass: that
        mass is one slot for a word never seen (a hot word). Giving it to each of 30,000
        general words made them as likely as an unseen domain word whatever
        `background_weight` said (the weight had no effect; in-domain WER 0.055 -> 0.068).
        """
        general = self.background.get(word, 0.0) if self.background else 0.0
        seen = word in self._continuation or word in self._histories
        domain = (
            0.0
            if general and not seen
            else (self._continuation.get(word, 0) + self.add_k) / self._denominator
        )
        if not self.background:
            return math.log(domain)
        weight = self.background_weight
        return math.log((1.0 - weight) * domain + weight * general)

    def log_prob(self, previous: str, word: str) -> float:
        """log P(word | previous); ``previous`` may be ``<s>``, ``word`` may be ``</s>``."""
        key = (previous, word)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        p_cont = math.exp(self.continuation_log_prob(word))
        followers = self.bigram_counts.get(previous)
        if not followers:
            p = p_cont
        else:
            total = self._history_total[previous]
            seen = max(followers.get(word, 0) - self.discount, 0.0) / total
            p = seen + self.discount * len(followers) / total * p_cont
        score = math.log(p)
        if len(self._cache) >= _CACHE_LIMIT:  # a long-running service meets many pairs
            self._cache.clear()
        self._cache[key] = score
        return score

    def backoff_log_prob(self, previous: str) -> float:
        """log of the weight P_cont gets after ``previous``: D * N1+(v .) / c(v), or 0 (weight
        1) for a word never seen with a follower. With it every P(w | v) of an unseen pair is
        ``exp(backoff_log_prob(v) + continuation_log_prob(w))``: the LM as an ARPA file."""
        followers = self.bigram_counts.get(previous)
        if not followers:
            return 0.0
        return math.log(self.discount * len(followers) / self._history_total[previous])

    def sentence_log_prob(self, text: str) -> float:
        words = text.split()
        return sum(self.log_prob(v, w) for v, w in zip([BOS, *words], [*words, EOS], strict=True))


def _background(
    background: dict[str, float] | None, weight: float
) -> tuple[dict[str, float], float]:
    """Background frequencies checked and normalised to sum to 1 (empty: none, weight 0)."""
    if not background or weight == 0.0:
        return {}, 0.0
    bad = [w for w in background if not WORD_PATTERN.match(w)]
    if bad:
        raise ValueError(f"background words must be lowercase a-z and apostrophes; got {bad[:5]}")
    if any(not p > 0 or not math.isfinite(p) for p in background.values()):
        raise ValueError("background frequencies must be finite and > 0")
    total = math.fsum(background.values())
    return {w: p / total for w, p in background.items()}, weight
