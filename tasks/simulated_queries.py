"""The simulator's text side: the typed search queries of a period, and names from a file.

When new people become newsworthy, people type their names into the search box before they
ask the phone. The story builds that feed: queries about the new names (written the way people
type them), everyday launch-era queries, and noise a real feed has: other names searched once
or twice, misspellings of the new names, one-off strings. The hot-word miner
(tasks/hot_words.py) must find the new names in it and mostly ignore the noise.

An operator can bring their own new names (`--names FILE`, one a line): they replace the
corpus's `new` era in every template slot a new-era person fills.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tasks.corpus import QueryTables, generate_queries, load_tables
from tasks.text import normalise_transcript

_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_ONSETS = ("b", "br", "d", "f", "g", "gr", "k", "kl", "l", "m", "n", "p", "r", "s", "t", "v", "z")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ou")
_NOISE_TEMPLATES = ("Who is {}?", "{} news", "Is {} married?", "{} age", "Pictures of {}")


class NamesFileError(ValueError):
    """A names file that cannot be used; the message names the file and the line."""


def read_names_file(path: Path) -> list[str]:
    """New names, one a line (blank lines and `#` comments skipped), each of letters, spaces,
    hyphens and apostrophes; NamesFileError names the line at fault."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise NamesFileError(f"names file {path}: cannot be read: {exc}") from None
    names: dict[str, None] = {}
    for number, line in enumerate(lines, start=1):
        name = line.split("#", 1)[0].strip()
        if not name:
            continue
        spoken = normalise_transcript(name)
        if not spoken or any(ch.isdigit() for ch in name):
            raise NamesFileError(
                f"names file {path} line {number}: expected a name of letters, got {line!r}"
            )
        names[" ".join(name.split())] = None
    if not names:
        raise NamesFileError(f"names file {path}: expected at least one name, found none")
    return list(names)


def tables_with_new_names(names: Sequence[str], tables: QueryTables | None = None) -> QueryTables:
    """The query tables with `names` as every new-era entity (celebrity, politician, ...)."""
    base = tables or load_tables()
    if not names:
        raise ValueError("expected at least one new name, got none")
    new = {slot: tuple(names) for slot in base.eras["new"]}
    digest = hashlib.sha256((base.sha256 + "\0" + "\n".join(names)).encode()).hexdigest()
    return QueryTables(base.templates, {**base.eras, "new": new}, base.plain, digest)


def invented_name(rng: np.random.Generator) -> str:
    """A two-word name nobody in the corpus has ("Brauvik Tesoma")."""

    def word() -> str:
        syllables = int(rng.integers(2, 4))
        parts = [
            _ONSETS[int(rng.integers(len(_ONSETS)))] + _VOWELS[int(rng.integers(len(_VOWELS)))]
            for _ in range(syllables)
        ]
        return "".join(parts).capitalize()

    return f"{word()} {word()}"


def misspelt(name: str, rng: np.random.Generator) -> str:
    """`name` with one letter dropped, doubled or replaced (a typing slip)."""
    letters = [i for i, ch in enumerate(name) if ch.isalpha()]
    i = letters[int(rng.integers(len(letters)))]
    kind = int(rng.integers(3))
    if kind == 0:
        return name[:i] + name[i + 1 :]
    if kind == 1:
        return name[: i + 1] + name[i] + name[i + 1 :]
    return name[:i] + _LETTERS[int(rng.integers(26))] + name[i + 1 :]


def one_off_string(rng: np.random.Generator) -> str:
    """A keyboard-mash query ("qzvtk lorp")."""
    words = int(rng.integers(1, 4))
    return " ".join(
        "".join(_LETTERS[int(rng.integers(26))] for _ in range(int(rng.integers(3, 9))))
        for _ in range(words)
    )


def simulated_typed_queries(
    new_names: Sequence[str],
    count: int,
    seed: int,
    new_share: float = 0.4,
    noise_share: float = 0.2,
) -> list[str]:
    """`count` typed queries of the period, shuffled: `new_share` about the new names,
    `noise_share` noise (other names searched once or twice, misspelt new names, one-off
    strings), the rest everyday launch-era queries."""
    if count < 0 or not 0 <= new_share + noise_share <= 1:
        raise ValueError(
            f"expected count >= 0 and new_share + noise_share in [0, 1], got {count}, "
            f"{new_share} + {noise_share}"
        )
    rng = np.random.default_rng(seed)
    n_new, n_noise = int(round(count * new_share)), int(round(count * noise_share))
    tables = tables_with_new_names(new_names)
    queries = [q.text for q in generate_queries(n_new, seed, {"new": 1.0}, tables)]
    queries += [q.text for q in generate_queries(count - n_new - n_noise, seed + 1)]
    for _ in range(n_noise):
        kind = int(rng.integers(3))
        if kind == 0:
            name = invented_name(rng)
        elif kind == 1:
            name = misspelt(new_names[int(rng.integers(len(new_names)))], rng)
        else:
            queries.append(one_off_string(rng))
            continue
        template = _NOISE_TEMPLATES[int(rng.integers(len(_NOISE_TEMPLATES)))]
        queries.append(template.format(name))
    order = rng.permutation(len(queries))
    return [queries[i] for i in order]


def write_typed_queries(path: Path, queries: Sequence[str]) -> Path:
    """The queries as a feed file, one a line (absolute: the flow may run elsewhere)."""
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{q}\n" for q in queries), encoding="utf-8")
    return path
