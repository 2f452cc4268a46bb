"""Hot words: new names mined from the typed search queries of the same period.

People type a new name into the search box before they say it to the phone. The queries of
that period (a file or URL the scope names, `hot_words.typed_queries`) are normalised like
transcripts; a run of words outside the served model's lexicon that recurs across distinct
queries is a candidate name. One-off strings, rare other names and misspellings are noise:
they recur less (`hot_words.min_count`), and a rare near-copy of a frequent candidate is
taken for its misspelling. The list is stored beside the model version
(data_contracts/hot_words.py), where the running service picks it up at its next poll.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from prefect import task

from data_contracts.hot_words import HotWordList, latest_list, latest_lists, write_list
from data_contracts.scoping import HotWordsScope, Scope
from models.recognizer import Recognizer
from models.text import edit_distance
from tasks.text import normalise_transcript

_WORD = re.compile(r"^[a-z']+$")


class TypedQueriesError(ValueError):
    """Typed queries that cannot be read; the message names the file or URL."""


@dataclass(frozen=True)
class MinedNames:
    """Candidate names, most frequent first, with how many distinct queries held each."""

    phrases: tuple[str, ...]
    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    queries: int = 0  # distinct queries read
    candidates: int = 0  # distinct runs of new words before filtering


def new_word_runs(text: str, lexicon: set[str], rules: HotWordsScope) -> list[str]:
    """The runs of consecutive words outside `lexicon` in one normalised query, as phrases;
    a run longer than `max_phrase_words` or with a too-short word is noise and dropped."""
    runs: list[list[str]] = [[]]
    for word in text.split():
        if word in lexicon or not _WORD.match(word):
            runs.append([])
        else:
            runs[-1].append(word)
    return [
        " ".join(run)
        for run in runs
        if run
        and len(run) <= rules.max_phrase_words
        and all(len(w) >= rules.min_word_chars for w in run)
    ]


def _is_misspelling(phrase: str, count: int, kept: list[tuple[str, int]]) -> bool:
    """A rare near-copy (about one edit in six letters) of a candidate seen 3x as often."""
    limit = max(1, len(phrase) // 6)
    return any(
        other_count >= 3 * count and edit_distance(phrase, other, limit) <= limit
        for other, other_count in kept
    )


def mine_new_names(queries: Iterable[str], lexicon: set[str], rules: HotWordsScope) -> MinedNames:
    """New names in typed queries: runs of words outside `lexicon` that recur in at least
    `rules.min_count` distinct queries, misspellings of a more frequent one dropped."""
    known = {w.lower() for w in lexicon}
    distinct = dict.fromkeys(
        text for text in (normalise_transcript(str(q)) for q in queries) if text
    )
    counts: Counter[str] = Counter()
    examples: dict[str, list[str]] = {}
    for text in distinct:
        for phrase in dict.fromkeys(new_word_runs(text, known, rules)):
            counts[phrase] += 1
            held = examples.setdefault(phrase, [])
            if len(held) < rules.examples_per_phrase:
                held.append(text)
    frequent = sorted(
        ((p, c) for p, c in counts.items() if c >= rules.min_count), key=lambda pc: (-pc[1], pc[0])
    )
    kept: list[tuple[str, int]] = []
    for phrase, count in frequent:
        if not _is_misspelling(phrase, count, kept):
            kept.append((phrase, count))
    kept = kept[: rules.max_phrases]
    return MinedNames(
        tuple(p for p, _ in kept),
        {p: c for p, c in kept},
        {p: examples[p] for p, _ in kept},
        queries=len(distinct),
        candidates=len(counts),
    )


@task(name="read-typed-queries", retries=2, retry_delay_seconds=2)
def read_typed_queries(source: str, workspace: Path) -> list[str]:
    """The typed queries, one a line, from a file (relative: under `workspace`) or a URL."""
    if source.startswith(("http://", "https://")):
        import httpx

        try:
            response = httpx.get(source, timeout=30, follow_redirects=True)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise TypedQueriesError(f"typed queries {source}: cannot be fetched: {exc}") from None
        text = response.text
    else:
        path = Path(source)
        path = path if path.is_absolute() else workspace / path
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise TypedQueriesError(f"typed queries {path}: cannot be read: {exc}") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


@task(name="model-lexicon", retries=1, retry_delay_seconds=2)
def model_lexicon(scope: Scope, version: str) -> set[str]:
    """The words a registered version can output (its LM words and its own hot words)."""
    from tasks.registry import configure_mlflow, download_recognizer

    configure_mlflow(
        scope.state.url("mlflow_tracking_uri"),
        scope.registry.experiment,
        scope.state.path("mlflow_artifacts"),
    )
    dest = scope.state.path("hot_words_dir") / ".models" / f"v{version}"
    return Recognizer.read_lexicon(download_recognizer(scope.registry.model_name, version, dest))


def merged_list(
    previous: HotWordList | None,
    mined: MinedNames,
    model_name: str,
    model_version: str,
    source: str,
    rules: HotWordsScope,
) -> HotWordList:
    """The next list of a model version: the previous one's names (a name people searched
    for stays heard) and the newly mined ones, most frequent first, capped."""
    counts = dict(previous.counts) if previous else {}
    examples = {p: list(e) for p, e in previous.examples.items()} if previous else {}
    for phrase in previous.phrases if previous else []:
        counts.setdefault(phrase, 0)
    for phrase in mined.phrases:
        counts[phrase] = max(counts.get(phrase, 0), mined.counts.get(phrase, 0))
        held = examples.setdefault(phrase, [])
        for text in mined.examples.get(phrase, []):
            if text not in held and len(held) < rules.examples_per_phrase:
                held.append(text)
    phrases = sorted(counts, key=lambda p: (-counts[p], p))[: rules.max_phrases]
    return HotWordList(
        model_name=model_name,
        model_version=model_version,
        version=previous.version if previous else 1,
        phrases=phrases,
        counts={p: counts[p] for p in phrases},
        examples={p: examples.get(p, []) for p in phrases},
        decoder=dict(rules.decoder),
        source=source,
    )


@task(name="publish-hot-words")
def publish_hot_words(
    root: Path,
    model_name: str,
    model_version: str,
    mined: MinedNames,
    source: str,
    rules: HotWordsScope,
) -> tuple[HotWordList, Path | None]:
    """Store the next version of the model version's list when its names changed; the list
    now in force and the file written (None: unchanged, nothing written)."""
    previous = latest_list(root, model_name, model_version)
    listed = merged_list(previous, mined, model_name, model_version, source, rules)
    same = previous is not None and sorted(previous.phrases) == sorted(listed.phrases)
    if same and previous is not None and previous.decoder == listed.decoder:
        return previous, None
    path = write_list(root, listed)
    return listed.model_copy(update={"version": int(path.stem)}), path


def mined_texts(root: Path, model_name: str) -> list[str]:
    """What a retrain re-speaks from the mined lists of every version of a model: each name,
    and the typed queries that held it."""
    texts: dict[str, None] = {}
    for listed in latest_lists(root, model_name):
        for phrase in listed.phrases:
            texts[phrase] = None
            texts.update(dict.fromkeys(listed.examples.get(phrase, [])))
    return list(texts)


def recognizer_with_list(recognizer: Recognizer, listed: HotWordList | None) -> Recognizer:
    """The recogniser as the service runs it with a hot-word list (unchanged without one)."""
    if listed is None or not listed.phrases:
        return recognizer
    return recognizer.with_hot_words(listed.phrases, listed.context, listed.decoder)
