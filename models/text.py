"""Character vocabulary and the text side of CTC.

This module deliberately does not import torch: data contracts import it to validate
transcripts, and that should stay cheap.
"""

from __future__ import annotations

import math
import string
from collections.abc import Iterable, Sequence

BLANK = "_"
SPACE = " "
VOCAB: tuple[str, ...] = (BLANK, SPACE, "'", *string.ascii_lowercase)  # 29 symbols, blank = 0
BLANK_ID = 0
SPACE_ID = 1

# A normalised transcript: lowercase words of a-z and apostrophes, single spaces, no edges.
# The empty transcript (silence) is valid too; callers allow it separately.
TRANSCRIPT_PATTERN = r"^[a-z']+( [a-z']+)*$"

_INDEX: dict[str, int] = {symbol: i for i, symbol in enumerate(VOCAB)}


def encode(text: str) -> list[int]:
    """Map a normalised transcript to token ids (never emits the blank)."""
    ids: list[int] = []
    for position, char in enumerate(text):
        index = _INDEX.get(char)
        if index is None or index == BLANK_ID:
            raise ValueError(
                f"cannot encode {char!r} at position {position} of {text!r}: expected only "
                f"lowercase a-z, apostrophe and space"
            )
        ids.append(index)
    return ids


def decode(ids: Iterable[int]) -> str:
    """Map token ids back to text; blanks are dropped, nothing is merged."""
    chars: list[str] = []
    for index in ids:
        if not 0 <= index < len(VOCAB):
            raise ValueError(f"token id {index} is outside the vocabulary of {len(VOCAB)}")
        if index != BLANK_ID:
            chars.append(VOCAB[index])
    return "".join(chars)


def ctc_collapse(ids: Sequence[int]) -> list[int]:
    """CTC's many-to-one map: merge repeated ids, then drop blanks."""
    out: list[int] = []
    previous = -1
    for index in ids:
        if index != previous and index != BLANK_ID:
            out.append(index)
        previous = index
    return out


def edit_distance(a: str, b: str, limit: int) -> int:
    """Levenshtein distance of a and b, or limit + 1 once it is certain to exceed `limit`."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        if min(current) > limit:
            return limit + 1
        previous = current
    return previous[-1]


def snap_to_phrases(text: str, phrases: Sequence[str], max_ratio: float) -> str:
    """Each run of consecutive words that all belong to hot phrases, replaced by the phrase
    nearest in spelling when it is within `max_ratio` character edits per letter (0: off).

    A beam biased towards hot words can put the right words of a name next to words of
    another ("fenella oriane" for "fenella quartermaine"); the run is snapped whole to one
    listed phrase. Ties go to the earlier phrase; runs of other words are left alone.
    """
    if max_ratio <= 0 or not phrases:
        return text
    phrase_words = {w for p in phrases for w in p.split()}
    words, out, i = text.split(), [], 0
    while i < len(words):
        if words[i] not in phrase_words:
            out.append(words[i])
            i += 1
            continue
        j = i
        while j < len(words) and words[j] in phrase_words:
            j += 1
        run = " ".join(words[i:j])
        best, best_ratio = run, math.inf
        for phrase in phrases:
            longer = max(len(phrase), len(run))
            limit = int(max_ratio * longer)
            ratio = edit_distance(run, phrase, limit) / longer
            if ratio < best_ratio:
                best, best_ratio = phrase, ratio
        out += best.split() if best_ratio <= max_ratio else words[i:j]
        i = j
    return " ".join(out)
