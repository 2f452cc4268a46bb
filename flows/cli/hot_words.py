"""`voicecycle hot-words update|show`: new names from typed queries, heard without retraining."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.cli.common import DEFAULT_SCOPE, ScopeFile, Workspace, app, load, prepare, print_json

hot_words_app = typer.Typer(
    name="hot-words",
    help="New names mined from the typed search queries of the period, added to the running "
    "decoder at its next reload (no new model version).",
    no_args_is_help=True,
)
app.add_typer(hot_words_app)

Queries = Annotated[
    str | None,
    typer.Option(
        "--queries",
        help="typed queries, one a line: a file or an http(s) URL "
        "(default: the scope's hot_words.typed_queries)",
    ),
]
Version = Annotated[
    str | None, typer.Option("--model-version", help="registry version (default: the champion)")
]


@hot_words_app.command()
def update(
    scope_file: ScopeFile = DEFAULT_SCOPE,
    workspace: Workspace = None,
    queries: Queries = None,
    model_version: Version = None,
) -> None:
    """Mine the typed queries for new names; store the model version's next hot-word list."""
    scope = load(scope_file, workspace)
    if queries and not queries.startswith(("http://", "https://")):
        queries = str(Path(queries).resolve())
    prepare(scope, quiet=True)
    from flows.hot_words import hot_words

    print_json(hot_words(scope, queries, model_version))


@hot_words_app.command()
def show(
    scope_file: ScopeFile = DEFAULT_SCOPE,
    workspace: Workspace = None,
    model_version: Version = None,
) -> None:
    """Print the newest hot-word list of every model version (or of one)."""
    from data_contracts.hot_words import latest_list, latest_lists

    scope = load(scope_file, workspace)
    root, name = scope.state.path("hot_words_dir"), scope.registry.model_name
    if model_version is not None:
        listed = latest_list(root, name, model_version)
        lists = [listed] if listed else []
    else:
        lists = latest_lists(root, name)
    print_json([{"hot_words_version": x.label, **x.model_dump(mode="json")} for x in lists])
