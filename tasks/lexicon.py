"""The general English lexicon of the open vocabulary: the most frequent English words (with
their frequencies, from the `wordfreq` package's offline data) filtered to what the decoder
can spell (lowercase a-z, an inner apostrophe). No network: wordfreq ships its tables."""

from __future__ import annotations

import re
from functools import lru_cache

GENERAL_WORD = re.compile(r"^[a-z]+(?:'[a-z]+)?$")
LANGUAGE = "en"


@lru_cache(maxsize=4)
def _ranked(n_words: int) -> tuple[tuple[str, float], ...]:
    from wordfreq import get_frequency_dict

    frequencies = get_frequency_dict(LANGUAGE, wordlist="best")  # most frequent first
    out: list[tuple[str, float]] = []
    for word, freq in frequencies.items():
        if freq > 0 and GENERAL_WORD.match(word):
            out.append((word, float(freq)))
            if len(out) == n_words:
                break
    return tuple(out)


def general_lexicon(n_words: int) -> dict[str, float]:
    """The `n_words` most frequent spellable English words -> relative frequency (0: none)."""
    if n_words < 0:
        raise ValueError(f"general_lexicon_words must be >= 0, got {n_words}")
    if n_words == 0:
        return {}
    ranked = _ranked(n_words)
    if len(ranked) < n_words:
        raise ValueError(
            f"general_lexicon_words={n_words}: wordfreq's {LANGUAGE!r} list holds only "
            f"{len(ranked)} spellable words"
        )
    return dict(ranked)
