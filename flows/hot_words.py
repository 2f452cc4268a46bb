"""Hot words: new names from the typed search queries of the period, heard by the running
decoder at its next reload, without a new model version."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow

from data_contracts.scoping import Scope
from tasks.hot_words import mine_new_names, model_lexicon, publish_hot_words, read_typed_queries
from tasks.retraining import current_champion
from tasks.scoping import validate_scope


@flow(name="hot-words", log_prints=True)
def hot_words(
    scope: Scope, typed_queries: str | None = None, model_version: str | None = None
) -> dict[str, Any]:
    """Mine the typed queries (default: `hot_words.typed_queries`) for names the model
    version (default: the champion) cannot output; store them as its next hot-word list."""
    validate_scope(scope)
    source = typed_queries or scope.hot_words.typed_queries
    if source is None:
        raise ValueError("no typed queries: set hot_words.typed_queries in the scope or pass one")
    version = model_version or current_champion(scope)
    if version is None:
        raise ValueError(f"no champion of {scope.registry.model_name} yet: train one first")
    lexicon = model_lexicon(scope, str(version))
    queries = read_typed_queries(source, scope.state.workspace)
    mined = mine_new_names(queries, lexicon, scope.hot_words)
    root = scope.state.path("hot_words_dir").resolve()
    listed, written = publish_hot_words(
        root, scope.registry.model_name, str(version), mined, source, scope.hot_words
    )
    print(
        f"hot words: {len(mined.phrases)} names mined from {mined.queries} queries "
        f"({mined.candidates} candidates); list {listed.label}"
        + (f" written to {written}" if written else " unchanged")
    )
    return {
        "model_version": str(version),
        "hot_words_version": listed.label,
        "written": str(written) if written else None,
        "phrases": list(listed.phrases),
        "mined": list(mined.phrases),
        "queries": mined.queries,
        "candidates": mined.candidates,
        "path": str(Path(root)),
    }
