"""Transcript normalisation: the data-definition rules for labels, applied the same way everywhere.

Labellers write "Play 2 songs by AC/DC!", "play two songs by ac dc" or "um play two songs":
one recogniser can only learn one convention, so every source goes through `normalise_transcript`.
The same function gives the spoken form handed to speech synthesis, so audio and label agree.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_ORDINAL_WORDS = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}
_SYMBOLS = {"%": " percent ", "&": " and ", "+": " plus ", "°": " degrees ", "@": " at "}
DEFAULT_FILLERS: tuple[str, ...] = ("um", "uh", "er", "erm", "ah", "hmm", "mm")
MAX_NUMBER = 999_999


def number_to_words(n: int) -> str:
    """Spell a non-negative integer up to 999,999 the way a voice-search user says it."""
    if n < 0 or n > MAX_NUMBER:
        raise ValueError(f"expected an integer in 0..{MAX_NUMBER}, got {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + ("" if ones == 0 else " " + _ONES[ones])
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return _ONES[hundreds] + " hundred" + ("" if rest == 0 else " " + number_to_words(rest))
    thousands, rest = divmod(n, 1000)
    return (
        number_to_words(thousands)
        + " thousand"
        + ("" if rest == 0 else " " + number_to_words(rest))
    )


def ordinal_to_words(n: int) -> str:
    """Spell an ordinal ("21st" -> "twenty first")."""
    words = number_to_words(n).split()
    last = words[-1]
    if last in _ORDINAL_WORDS:
        words[-1] = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def _expand_numbers(text: str) -> str:
    # ordinals first so "1st" is not read as "one st"
    text = re.sub(
        r"\b(\d+)(st|nd|rd|th)\b", lambda m: " " + ordinal_to_words(int(m[1])) + " ", text
    )
    # 1,500 -> 1500 before spelling
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    # 3.5 -> three point five
    text = re.sub(
        r"\b(\d+)\.(\d+)\b",
        lambda m: (
            f" {number_to_words(int(m[1]))} point " + " ".join(_ONES[int(d)] for d in m[2]) + " "
        ),
        text,
    )
    return re.sub(r"\d+", lambda m: " " + _spell_digits_or_number(m[0]) + " ", text)


def _spell_digits_or_number(digits: str) -> str:
    if len(digits) > 6 or (len(digits) > 1 and digits.startswith("0")):
        return " ".join(_ONES[int(d)] for d in digits)  # phone numbers, codes
    return number_to_words(int(digits))


def normalise_transcript(
    text: str,
    lowercase: bool = True,
    expand_numbers: bool = True,
    drop_fillers: Sequence[str] = DEFAULT_FILLERS,
) -> str:
    """Apply the data-definition rules: ascii, case, numbers, symbols, punctuation, fillers."""
    if not isinstance(text, str):
        raise TypeError(f"expected a transcript string, got {type(text).__name__}")
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    for symbol, word in _SYMBOLS.items():
        text = text.replace(symbol, word)
    if expand_numbers:
        text = _expand_numbers(text)
    if lowercase:
        text = text.lower()
    text = text.replace("-", " ").replace("/", " ")
    # keep apostrophes inside words (what's, o'neill), drop every other mark
    text = re.sub(r"[^a-zA-Z0-9' ]+", " ", text)
    text = re.sub(r"(?<![a-zA-Z])'|'(?![a-zA-Z])", " ", text)
    fillers = {f.lower() for f in drop_fillers}
    words = [w for w in text.split() if w.lower() not in fillers]
    return " ".join(words)
