"""A workspace's MLflow SQLite store follows the workspace when it moves.

MLflow keeps absolute `file://` URIs in its store: the experiment's artifact location, every
run's and logged model's artifacts, every model version's storage location, every dataset
input's source. Moved to another folder (or copied), a workspace's registry would still point
at the old place, and the first retrain after the move fails to download its champion. When
the experiment's artifact location is not the scope's artifact folder but that folder exists,
`rebase_moved_store` rewrites the old prefix to the new one in one transaction, before MLflow
opens the store, and says so in one line. Stores behind a tracking server are the server's.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

# (table, column) holding URIs that start with the old location
_PREFIXED = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
    ("model_versions", "storage_location"),
    ("model_versions", "source"),
)
_EMBEDDED = (("datasets", "dataset_source"),)  # JSON that holds a URI


def moved_prefixes(old: str, new: str) -> tuple[str, str]:
    """The prefixes that differ once the common tail is set aside: the artifact folders
    file:///a/ws/mlflow/artifacts and file:///b/ws2/mlflow/artifacts give (.../a/ws, .../b/ws2),
    so data under the workspace beside the artifacts is rebased too."""
    old_parts, new_parts = old.rstrip("/").split("/"), new.rstrip("/").split("/")
    while len(old_parts) > 3 and len(new_parts) > 3 and old_parts[-1] == new_parts[-1]:
        old_parts, new_parts = old_parts[:-1], new_parts[:-1]
    return "/".join(old_parts), "/".join(new_parts)


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {str(row[1]) for row in db.execute(f"PRAGMA table_info({table})")}


def rebase_moved_store(tracking_uri: str, experiment: str, artifact_root: Path) -> int:
    """Rewrite the store's URIs if the workspace moved since `experiment` was made; the
    number of values rewritten (0: nothing moved, not a SQLite store, or no such store)."""
    if not tracking_uri.startswith("sqlite:///"):
        return 0
    path = Path(tracking_uri.removeprefix("sqlite:///"))
    new_root = artifact_root.resolve().as_uri()
    if not path.is_file() or not artifact_root.is_dir():
        return 0
    with closing(sqlite3.connect(path, timeout=60)) as db, db:
        if "artifact_location" not in _columns(db, "experiments"):
            return 0
        found = db.execute(
            "SELECT artifact_location FROM experiments WHERE name = ?", (experiment,)
        ).fetchone()
        if found is None or not str(found[0]).startswith("file://") or found[0] == new_root:
            return 0
        old, new = moved_prefixes(str(found[0]), new_root)
        changed = 0
        db.execute("BEGIN IMMEDIATE")
        for table, column in _PREFIXED:
            if column in _columns(db, table):
                changed += db.execute(
                    f"UPDATE {table} SET {column} = ? || substr({column}, ?) "
                    f"WHERE {column} = ? OR substr({column}, 1, ?) = ?",
                    (new, len(old) + 1, old, len(old) + 1, old + "/"),
                ).rowcount
        for table, column in _EMBEDDED:
            if column in _columns(db, table):
                changed += db.execute(
                    f"UPDATE {table} SET {column} = replace({column}, ?, ?) "
                    f"WHERE instr({column}, ?) > 0",
                    (old + "/", new + "/", old + "/"),
                ).rowcount
    print(
        f"MLflow store {path}: the workspace moved from {old.removeprefix('file://')} to "
        f"{new.removeprefix('file://')}; {changed} stored locations now point at the new place"
    )
    return changed
