"""The data-definition rules for transcripts."""

import pytest

from models.text import TRANSCRIPT_PATTERN
from tasks.text import normalise_transcript, number_to_words, ordinal_to_words


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Play 2 songs by AC/DC!", "play two songs by ac dc"),
        ("Um, what's the weather in São Paulo?", "what's the weather in sao paulo"),
        ("Set an alarm for 7:30 pm", "set an alarm for seven thirty pm"),
        ("Is it 3.5% or 1,500?", "is it three point five percent or one thousand five hundred"),
        ("News on the 21st", "news on the twenty first"),
        ("'Quoted' rock-n-roll", "quoted rock n roll"),
        ("call 0612", "call zero six one two"),
        ("uh um hmm", ""),
        ("  MANY   spaces\t", "many spaces"),
        ("Beyoncé & Jay-Z", "beyonce and jay z"),
    ],
)
def test_normalise_transcript(raw: str, expected: str) -> None:
    out = normalise_transcript(raw)
    assert out == expected
    import re

    assert out == "" or re.match(TRANSCRIPT_PATTERN, out)


def test_fillers_can_be_kept_for_synthesis() -> None:
    assert normalise_transcript("um play jazz", drop_fillers=()) == "um play jazz"


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (0, "zero"),
        (13, "thirteen"),
        (40, "forty"),
        (105, "one hundred five"),
        (2024, "two thousand twenty four"),
        (999_999, "nine hundred ninety nine thousand nine hundred ninety nine"),
    ],
)
def test_number_to_words(n: int, words: str) -> None:
    assert number_to_words(n) == words


@pytest.mark.parametrize(
    ("n", "words"), [(1, "first"), (22, "twenty second"), (30, "thirtieth"), (13, "thirteenth")]
)
def test_ordinals(n: int, words: str) -> None:
    assert ordinal_to_words(n) == words


def test_number_out_of_range_names_the_value() -> None:
    with pytest.raises(ValueError, match="1000000"):
        number_to_words(1_000_000)
