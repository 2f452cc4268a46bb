"""Character vocabulary and the text side of CTC.

This module deliberately does not import torch: data contracts import it to validate
transcripts, and that should stay cheap.
"""

from __future__ import annotations

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
