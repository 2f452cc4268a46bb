"""The hot-word list: new names the running decoder hears without a new model version.

A list belongs to one registry version of one model and is versioned beside it, append only:
`<state.hot_words_dir>/<model_name>/<model_version>/<n>.json` (n = 1, 2, ...). The service
reads the newest list of the version it serves at each reload poll; the hot-words flow writes
a new file only when the list changed; nothing written is ever rewritten.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

LIST_FORMAT = "voicecycle-hot-words/1"
PHRASE_PATTERN = r"^[a-z']+( [a-z']+)*$"
# the BeamSettings fields (models/decoder.py) a list may change while it is in force
DECODER_KEYS = frozenset(
    {
        "beam_size",
        "beam_size_token",
        "beam_threshold",
        "lm_weight",
        "word_score",
        "hot_word_bonus",
        "known_hot_word_share",
        "hot_phrase_snap",
    }
)


class HotWordListError(ValueError):
    """A hot-word list file that cannot be used; the message names the file and field."""


class HotWordList(BaseModel):
    """One version of a model version's hot-word list."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    format: str = LIST_FORMAT
    model_name: str
    model_version: str
    version: int = Field(ge=1)
    phrases: list[str]
    counts: dict[str, int] = {}  # distinct queries each phrase was seen in
    examples: dict[str, list[str]] = {}  # typed queries that hold each phrase
    # BeamSettings fields the decoder changes while the list is in force (a wider beam, a
    # larger bonus: names the acoustic model never learned need them)
    decoder: dict[str, int | float] = {}
    source: str = ""  # where the typed queries came from
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat())

    @field_validator("phrases")
    @classmethod
    def _phrases_normalised(cls, phrases: list[str]) -> list[str]:
        import re

        for i, phrase in enumerate(phrases):
            if not re.match(PHRASE_PATTERN, phrase):
                raise ValueError(
                    f"phrase {i} {phrase!r}: expected lowercase words of a-z and ' "
                    "separated by single spaces"
                )
        return phrases

    @field_validator("decoder")
    @classmethod
    def _known_settings(cls, decoder: dict[str, int | float]) -> dict[str, int | float]:
        unknown = sorted(set(decoder) - DECODER_KEYS)
        if unknown:
            raise ValueError(
                f"unknown decoder settings {unknown}; expected among {sorted(DECODER_KEYS)}"
            )
        return decoder

    @property
    def context(self) -> list[str]:
        """The typed queries that held the names: the decoder's LM counts them in."""
        return [text for phrase in self.phrases for text in self.examples.get(phrase, [])]

    @property
    def label(self) -> str:
        """How /metadata names this list: `<model_version>.<version>`."""
        return f"{self.model_version}.{self.version}"


def list_dir(root: Path, model_name: str, model_version: str) -> Path:
    """The folder holding every version of one model version's hot-word list."""
    return Path(root) / model_name / str(model_version)


def _versions(folder: Path) -> list[int]:
    if not folder.is_dir():
        return []
    return sorted(int(p.stem) for p in folder.glob("*.json") if p.stem.isdigit())


def read_list(path: Path) -> HotWordList:
    """Read and check one list file; HotWordListError names the file and the field at fault."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise HotWordListError(f"hot-word list {path}: cannot be read: {exc}") from None
    try:
        listed = HotWordList.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}"
            for e in exc.errors()
        )
        raise HotWordListError(f"hot-word list {path}: {problems}") from None
    if listed.format != LIST_FORMAT:
        raise HotWordListError(
            f"hot-word list {path}: expected format {LIST_FORMAT!r}, got {listed.format!r}"
        )
    return listed


def latest_list(root: Path, model_name: str, model_version: str) -> HotWordList | None:
    """The newest hot-word list of a model version (None: it has none)."""
    folder = list_dir(root, model_name, model_version)
    versions = _versions(folder)
    return read_list(folder / f"{versions[-1]}.json") if versions else None


def latest_lists(root: Path, model_name: str) -> list[HotWordList]:
    """The newest list of every version of a model that has one."""
    base = Path(root) / model_name
    if not base.is_dir():
        return []
    found = (latest_list(root, model_name, d.name) for d in sorted(base.iterdir()) if d.is_dir())
    return [listed for listed in found if listed is not None]


def write_list(root: Path, listed: HotWordList) -> Path:
    """Store `listed` as the next version of its model version's list (never overwriting);
    its path. The version in `listed` is replaced by the next free one."""
    folder = list_dir(root, listed.model_name, listed.model_version)
    folder.mkdir(parents=True, exist_ok=True)
    while True:
        version = (_versions(folder) or [0])[-1] + 1
        stored = listed.model_copy(update={"version": version})
        target = folder / f"{version}.json"
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(stored.model_dump(mode="json"), indent=1) + "\n")
        try:
            os.link(tmp, target)  # fails if another writer took this version first
        except FileExistsError:
            continue
        finally:
            os.unlink(tmp)
        return target
