"""Voice-search queries in written form, with entities from two eras.

`launch` holds the names a recogniser is trained on at launch; `new` holds people who became
newsworthy afterwards (invented names whose words never occur in launch data), the drift that
a retraining cycle has to catch. The `new` list doubles as a newsroom's curated hot-word list.

The templates and entity lists are package data (tasks/corpus_data/templates.yaml and
entities.yaml); a scope can replace either file (`load_tables`).

Queries are written the way a labeller would type them ("Set a timer for 15 minutes",
"Um, who is Zarina Okonkwo-Bell?"); `tasks.text.normalise_transcript` gives the spoken form.
"""

from __future__ import annotations

import hashlib
import math
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import yaml

ERAS: tuple[str, ...] = ("launch", "new")
FILLER_RATE = 0.03
_FILLERS = ("um", "uh")
DEFAULT_ERA_WEIGHTS: Mapping[str, float] = MappingProxyType({"launch": 1.0})
_UNITS = (
    ("miles", "kilometers"),
    ("pounds", "kilograms"),
    ("cups", "liters"),
    ("feet", "meters"),
    ("dollars", "euros"),
    ("ounces", "grams"),
)


@dataclass(frozen=True)
class Query:
    """One voice-search query in written form, with the entities it mentions."""

    text: str
    intent: str
    entities: tuple[str, ...]
    era: str


def _ordinal(n: int) -> str:
    """Write an ordinal with digits ("21st")."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _time_of_day(rng: np.random.Generator) -> str:
    """A clock time as people type it ("6:30", "7 o'clock")."""
    hour = int(rng.integers(5, 12))
    minute = int(rng.choice([0, 0, 15, 20, 30, 40, 45]))
    return f"{hour} o'clock" if minute == 0 else f"{hour}:{minute}"


_NUMERIC_SLOTS: dict[str, Callable[[np.random.Generator], str]] = {
    "count": lambda rng: str(int(rng.integers(2, 13))),
    "minutes": lambda rng: str(int(rng.choice([2, 3, 5, 10, 12, 15, 20, 25, 30, 45, 90]))),
    "time": _time_of_day,
    "ordinal": lambda rng: _ordinal(int(rng.integers(1, 32))),
    "percent": lambda rng: str(int(rng.choice([5, 10, 15, 18, 20, 25, 30, 75]))),
    "amount": lambda rng: str(int(rng.choice([40, 60, 80, 120, 250, 300, 1500]))),
    "unit_pair": lambda rng: " to ".join(_UNITS[int(rng.integers(len(_UNITS)))]),
}


def _slots(template: str) -> list[str]:
    """The slot names of a template, in order."""
    return [field for _, field, _, _ in string.Formatter().parse(template) if field]


def _slot_type(slot: str) -> str:
    """The value type of a slot ("team_2" -> "team")."""
    return slot.rsplit("_", 1)[0] if slot.endswith("_2") else slot


class TablesError(ValueError):
    """A templates or entities file that cannot be used; the message names the file and row."""


@dataclass(frozen=True)
class QueryTables:
    """What queries are made of: templates by intent, entity values by era, plain slot values."""

    templates: dict[str, tuple[str, ...]]
    eras: dict[str, dict[str, tuple[str, ...]]]
    plain: dict[str, tuple[str, ...]]
    sha256: str  # of both files' bytes: part of a corpus's identity

    @property
    def intents(self) -> tuple[str, ...]:
        return tuple(self.templates)

    def entity_names(self) -> dict[str, tuple[str, ...]]:
        """Entity values per era: launch sorted, new in file order (the newsroom's list)."""
        launch = sorted({v for values in self.eras["launch"].values() for v in values})
        new = dict.fromkeys(v for values in self.eras["new"].values() for v in values)
        return {"launch": tuple(launch), "new": tuple(new)}


def _read_yaml(path: Path | None, default: str) -> tuple[Any, bytes, str]:
    """A YAML file's parsed content, bytes and display name (package data when path is None)."""
    if path is None:
        data = resources.files("tasks").joinpath("corpus_data", default).read_bytes()
        name = f"tasks/corpus_data/{default}"
    else:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise TablesError(f"cannot read {path}: {exc}") from None
        name = str(path)
    try:
        return yaml.safe_load(data), data, name
    except yaml.YAMLError as exc:
        raise TablesError(f"{name} is not valid YAML: {exc}") from None


def _value_lists(obj: Any, where: str) -> dict[str, tuple[str, ...]]:
    """A mapping of name -> non-empty list of non-empty strings, or TablesError naming the row."""
    if not isinstance(obj, dict) or not obj:
        raise TablesError(f"{where}: expected a mapping of names to lists, got {obj!r:.80}")
    out: dict[str, tuple[str, ...]] = {}
    for key, values in obj.items():
        if not isinstance(values, list) or not values:
            raise TablesError(f"{where}.{key}: expected a non-empty list, got {values!r:.80}")
        for i, value in enumerate(values, start=1):
            if not isinstance(value, str) or not value.strip():
                raise TablesError(f"{where}.{key} item {i}: expected text, got {value!r:.80}")
        out[str(key)] = tuple(values)
    return out


@cache
def load_tables(
    templates_file: Path | None = None, entities_file: Path | None = None
) -> QueryTables:
    """Read and check the templates and entities (package data unless a file is given)."""
    raw_t, bytes_t, name_t = _read_yaml(templates_file, "templates.yaml")
    raw_e, bytes_e, name_e = _read_yaml(entities_file, "entities.yaml")
    templates = _value_lists(raw_t, name_t)
    if not isinstance(raw_e, dict) or set(raw_e) != {"eras", "plain"}:
        raise TablesError(f"{name_e}: expected exactly the keys 'eras' and 'plain'")
    eras_raw = raw_e["eras"]
    if not isinstance(eras_raw, dict) or set(eras_raw) != set(ERAS):
        raise TablesError(f"{name_e}: eras: expected exactly {list(ERAS)}")
    eras = {era: _value_lists(eras_raw[era], f"{name_e}: eras.{era}") for era in ERAS}
    plain = _value_lists(raw_e["plain"], f"{name_e}: plain")
    known = set(eras["launch"]) | set(eras["new"]) | set(plain) | set(_NUMERIC_SLOTS)
    for intent, rows in templates.items():
        for i, template in enumerate(rows, start=1):
            try:
                slots = _slots(template)
            except ValueError as exc:
                raise TablesError(f"{name_t}: {intent} item {i} {template!r}: {exc}") from None
            unknown = sorted({_slot_type(s) for s in slots} - known)
            if unknown:
                raise TablesError(
                    f"{name_t}: {intent} item {i} {template!r} has unknown slot(s) {unknown}; "
                    f"known: {sorted(known)}"
                )
    digest = hashlib.sha256(bytes_t + b"\0" + bytes_e).hexdigest()
    return QueryTables(templates, eras, plain, digest)


def __getattr__(name: str) -> Any:
    """INTENTS and ENTITY_NAMES of the packaged tables, read on first use (not at import)."""
    if name == "INTENTS":
        return load_tables().intents
    if name == "ENTITY_NAMES":
        return load_tables().entity_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _pick(values: tuple[str, ...], rng: np.random.Generator, avoid: set[str]) -> str:
    """One value not in `avoid` (so "{team} and {team_2}" names two different teams)."""
    choices = [v for v in values if v not in avoid] or list(values)
    return choices[int(rng.integers(len(choices)))]


def _fill(
    tables: QueryTables, template: str, era: str, rng: np.random.Generator
) -> tuple[str, tuple[str, ...]]:
    """Fill a template's slots; return the text and the entity values it mentions."""
    values: dict[str, str] = {}
    entities: list[str] = []
    for slot in _slots(template):
        kind = _slot_type(slot)
        era_values = tables.eras[era].get(kind) or tables.eras["launch"].get(kind)
        if era_values is not None:
            values[slot] = _pick(era_values, rng, set(values.values()))
            entities.append(values[slot])
        elif kind in tables.plain:
            values[slot] = _pick(tables.plain[kind], rng, set())
        elif kind in _NUMERIC_SLOTS:
            values[slot] = _NUMERIC_SLOTS[kind](rng)
        else:
            raise KeyError(f"template {template!r} has an unknown slot {slot!r}")
    text = template.format(**values)
    return text[0].upper() + text[1:], tuple(entities)


def _add_filler(text: str, rng: np.random.Generator, starts_with_name: bool) -> str:
    """Insert a hesitation ("Um, what's..." or "Play, uh, ...") the way labellers write it."""
    filler = _FILLERS[int(rng.integers(len(_FILLERS)))]
    first, _, rest = text.partition(" ")
    if not rest or rng.random() < 0.6:
        head = text if starts_with_name else text[0].lower() + text[1:]
        return f"{filler.capitalize()}, {head}"
    return f"{first}, {filler}, {rest}"


def _new_era_templates(tables: QueryTables) -> dict[str, tuple[str, ...]]:
    """Templates whose slots a new-era entity can fill, by intent."""
    person_slots = set(tables.eras["new"])
    found = {
        intent: tuple(t for t in templates if person_slots & {_slot_type(s) for s in _slots(t)})
        for intent, templates in tables.templates.items()
    }
    return {intent: templates for intent, templates in found.items() if templates}


def _era_probabilities(era_weights: Mapping[str, float]) -> tuple[list[str], np.ndarray]:
    """Validate era weights; return the eras (sorted) and their probabilities."""
    if not era_weights:
        raise ValueError(f"expected at least one era weight out of {ERAS}, got none")
    unknown = sorted(set(era_weights) - set(ERAS))
    if unknown:
        raise ValueError(f"expected eras among {ERAS}, got unknown {unknown}")
    eras = sorted(era_weights)
    weights = np.array([float(era_weights[e]) for e in eras])
    if not all(math.isfinite(w) and w >= 0 for w in weights) or weights.sum() <= 0:
        raise ValueError(
            f"expected finite non-negative era weights with a positive sum, got {dict(era_weights)}"
        )
    return eras, weights / weights.sum()


def generate_queries(
    n: int,
    seed: int,
    era_weights: Mapping[str, float] = DEFAULT_ERA_WEIGHTS,
    tables: QueryTables | None = None,
) -> list[Query]:
    """Generate `n` written voice-search queries, deterministic for a seed, weights and tables."""
    tables = tables or load_tables()
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"expected a non-negative number of queries, got {n!r}")
    eras, probs = _era_probabilities(era_weights)
    rng = np.random.default_rng(seed)
    new_templates = _new_era_templates(tables)
    queries = []
    for _ in range(n):
        era = eras[int(rng.choice(len(eras), p=probs))]
        by_intent = tables.templates if era == "launch" else new_templates
        intents = sorted(by_intent)
        intent = intents[int(rng.integers(len(intents)))]
        templates = by_intent[intent]
        template = templates[int(rng.integers(len(templates)))]
        text, entities = _fill(tables, template, era, rng)
        if rng.random() < FILLER_RATE:
            text = _add_filler(text, rng, starts_with_name=template.startswith("{"))
        queries.append(Query(text=text, intent=intent, entities=entities, era=era))
    return queries


@cache
def _general_sentences() -> tuple[str, ...]:
    """The packaged general-English sentences (tasks/corpus_data/general.yaml)."""
    raw, _, name = _read_yaml(None, "general.yaml")
    if not isinstance(raw, dict) or not isinstance(raw.get("sentences"), list):
        raise TablesError(f"{name}: expected a mapping with a 'sentences' list")
    sentences = _value_lists({"sentences": raw["sentences"]}, name)["sentences"]
    return sentences


def general_sentences(n: int, seed: int) -> list[str]:
    """`n` general-English sentences outside the voice-search templates (a seeded shuffle,
    cycled): what the recogniser meets beyond its domain. For measurement, never training."""
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"expected a non-negative number of sentences, got {n!r}")
    pool = _general_sentences()
    rng = np.random.default_rng([seed, 7])
    out: list[str] = []
    while len(out) < n:
        out += [pool[i] for i in rng.permutation(len(pool))]
    return out[:n]


GENERAL_TRAINING_WORDS = 20000  # drawn from the most frequent (within the decoder's lexicon)
GENERAL_INTENT = "general"  # the intent (and era) of general-English training utterances
GENERAL_WORDS_PER_UTTERANCE = (3, 8)  # fewest and most words of one
GENERAL_TEMPERING = 0.5  # word weights: frequency ** this, so less common words are heard too


def general_training_queries(n: int, seed: int, lexicon: Mapping[str, float]) -> list[Query]:
    """`n` general-English training utterances: runs of 3-8 words drawn from `lexicon`
    (word -> frequency; tasks.lexicon.general_lexicon), weighted by frequency ** 0.5.

    They teach the acoustic model to spell words beyond the voice-search templates (the
    open vocabulary); their word order means nothing, so the word LM is never built from them
    (tasks.training.training_sets). Deterministic for `n`, `seed` and the lexicon.
    """
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"expected a non-negative number of utterances, got {n!r}")
    if n == 0:
        return []
    if not lexicon:
        raise ValueError("expected a non-empty general lexicon to draw training words from")
    # words a speech engine reads as words: acronyms without a vowel ("nm") are spelt out
    words = sorted(w for w in lexicon if len(w) > 1 and any(c in "aeiouy" for c in w))
    if not words:
        raise ValueError("expected speakable words in the general lexicon, got none")
    weights = np.array([lexicon[w] for w in words], dtype=np.float64) ** GENERAL_TEMPERING
    weights /= weights.sum()
    rng = np.random.default_rng([seed, 11])
    shortest, longest = GENERAL_WORDS_PER_UTTERANCE
    queries = []
    for _ in range(n):
        picks = rng.choice(len(words), size=int(rng.integers(shortest, longest + 1)), p=weights)
        text = " ".join(words[int(i)] for i in picks)
        queries.append(Query(text=text, intent=GENERAL_INTENT, entities=(), era=GENERAL_INTENT))
    return queries
