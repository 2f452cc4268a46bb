import re
import subprocess
import sys

import pytest

from models.text import BLANK, TRANSCRIPT_PATTERN, VOCAB, ctc_collapse, decode, encode


def test_vocab_layout() -> None:
    assert len(VOCAB) == 29
    assert VOCAB[0] == BLANK
    assert VOCAB[1] == " "
    assert len(set(VOCAB)) == len(VOCAB)


@pytest.mark.parametrize("text", ["", "a", "who is taylor swift", "don't stop", "zz top", "'"])
def test_encode_decode_round_trip(text: str) -> None:
    ids = encode(text)
    assert 0 not in ids
    assert decode(ids) == text


@pytest.mark.parametrize(
    ("text", "char", "position"),
    [
        ("Hello", "H", 0),
        ("hi!", "!", 2),
        ("caf\u00e9", "\u00e9", 3),
        ("a_b", "_", 1),
        ("a1", "1", 1),
    ],
)
def test_encode_rejects_unknown_characters(text: str, char: str, position: int) -> None:
    with pytest.raises(ValueError, match=rf"{re.escape(repr(char))} at position {position}"):
        encode(text)


@pytest.mark.parametrize(
    ("ids", "expected"),
    [
        ([], []),
        ([0, 0, 0], []),
        ([3, 3, 0, 3], [3, 3]),  # a blank separates a real double letter
        ([0, 7, 7, 7, 0, 0, 14, 1, 1, 9], [7, 14, 1, 9]),
    ],
)
def test_ctc_collapse(ids: list[int], expected: list[int]) -> None:
    assert ctc_collapse(ids) == expected


def test_decode_rejects_out_of_range_ids() -> None:
    with pytest.raises(ValueError, match="outside the vocabulary"):
        decode([3, 29])


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("who is it", True),
        ("rock'n'roll", True),
        ("", False),
        (" a", False),
        ("a  b", False),
        ("a ", False),
        ("A", False),
    ],
)
def test_transcript_pattern(text: str, ok: bool) -> None:
    assert (re.match(TRANSCRIPT_PATTERN, text) is not None) == ok


def test_text_module_does_not_import_torch() -> None:
    code = "import sys, models.text; assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
