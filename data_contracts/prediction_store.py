"""The prediction log: one durable row per answered request, on SQLAlchemy Core.

SQLite (WAL journal) by default, so one laptop needs no database server; any SQLAlchemy URL
(Postgres for a team) works unchanged. The service appends a row *before* it sends the
response, and `append` commits before it returns: a client that got an answer can rely on
its request being in the log, even if the server is killed right after.

With `synchronous=NORMAL` in WAL mode a commit survives the process being killed; it can be
lost only if the operating system or the power fails before the next checkpoint. That is
SQLite's documented trade-off and the one the brief asks for; set `synchronous=FULL` (or use
Postgres) where power loss must not lose rows.

It sits beside its contract (data_contracts/prediction_log.py) so that the service writes and
the monitoring and labelling tasks read the log without importing each other's room; it imports
neither bentoml, prefect nor mlflow.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from data_contracts.prediction_log import (
    AUDIO_FEATURE_COLUMNS,
    PREDICTION_LOG_COLUMNS,
    PredictionLog,
)

logger = logging.getLogger(__name__)

TABLE_NAME = "prediction_log"
SQLITE_BUSY_TIMEOUT_MS = 10_000
_NULLABLE = ("audio_path",)
_FLOATS = ("confidence", "latency_ms", *AUDIO_FEATURE_COLUMNS)


def _table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        TABLE_NAME,
        metadata,
        # insertion order; ties in `ts` are broken by it
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(64), nullable=False, unique=True),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("model_version", sa.String(128), nullable=False),
        sa.Column("model_tag", sa.String(256), nullable=False),
        sa.Column("transcript", sa.Text, nullable=False),
        *(sa.Column(name, sa.Float, nullable=False) for name in _FLOATS),
        sa.Column("n_words", sa.Integer, nullable=False),
        sa.Column("client", sa.Text, nullable=False),
        sa.Column("consent", sa.Boolean, nullable=False),
        sa.Column("audio_path", sa.Text, nullable=True),
        # A log written before issue 12 also has `scenario` and `reference` columns (what the
        # simulator sent); they stay in the table, untouched, and are neither read nor written.
    )


def _utc(ts: datetime) -> datetime:
    """An aware UTC datetime; a naive one is taken to be UTC already."""
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _sqlite_pragmas(busy_timeout_ms: int) -> Any:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        finally:
            cursor.close()

    return on_connect


class PredictionStore:
    """Append, read and purge prediction-log rows; safe to share between threads."""

    def __init__(self, url: str, busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS) -> None:
        """`busy_timeout_ms`: how long a SQLite write waits for another writer's lock before
        it fails (the service passes `serving.log_busy_timeout_ms`, short, so that a locked
        log is answered 503 quickly; batch readers and writers keep the long default)."""
        self.url = url
        parsed = make_url(url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        if self.is_sqlite:
            database = parsed.database or ""
            if database in ("", ":memory:") or database.startswith("file:"):
                raise ValueError(
                    f"the prediction log needs a file-backed SQLite URL "
                    f"(sqlite:////abs/path/predictions.db), got {url!r}"
                )
            Path(database).parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = sa.create_engine(
                url, connect_args={"timeout": busy_timeout_ms / 1000}
            )
            sa.event.listen(self.engine, "connect", _sqlite_pragmas(busy_timeout_ms))
        else:
            self.engine = sa.create_engine(url, pool_pre_ping=True)
        self._metadata = sa.MetaData()
        self.table = _table(self._metadata)
        # SQLite lets one writer in at a time anyway; serialising this process's writers here
        # keeps them off the busy-wait path (other processes still rely on busy_timeout).
        self._write_lock = threading.Lock() if self.is_sqlite else None
        try:
            self._metadata.create_all(self.engine, checkfirst=True)
        except sa.exc.DatabaseError:
            # Another process (a second worker) created it between the check and the create.
            if not sa.inspect(self.engine).has_table(TABLE_NAME):
                raise

    def __repr__(self) -> str:
        return f"PredictionStore({self.engine.url.render_as_string(hide_password=True)!r})"

    def close(self) -> None:
        """Release pooled connections."""
        self.engine.dispose()

    def _normalise(self, record: Mapping[str, Any]) -> dict[str, Any]:
        unknown = set(record) - set(PREDICTION_LOG_COLUMNS)
        if unknown:
            raise ValueError(f"prediction record has unknown fields {sorted(unknown)}")
        row: dict[str, Any] = {name: record.get(name) for name in _NULLABLE}
        row.update(record)
        row.setdefault("ts", datetime.now(UTC))
        missing = [name for name in PREDICTION_LOG_COLUMNS if name not in row]
        if missing:
            raise ValueError(f"prediction record lacks fields {missing}")
        row["ts"] = _utc(row["ts"])
        if self.is_sqlite:
            row["ts"] = row["ts"].replace(tzinfo=None)  # SQLite stores naive UTC text
        if not isinstance(row["client"], str):
            row["client"] = json.dumps(row["client"], sort_keys=True)
        for name in _FLOATS:
            row[name] = float(row[name])
        row["n_words"] = int(row["n_words"])
        row["consent"] = bool(row["consent"])
        return row

    def append(self, record: Mapping[str, Any]) -> None:
        """Insert one row (the PredictionLog columns; `ts` defaults to now); committed on return."""
        row = self._normalise(record)
        if self._write_lock is None:
            with self.engine.begin() as conn:
                conn.execute(self.table.insert(), row)
            return
        with self._write_lock, self.engine.begin() as conn:
            conn.execute(self.table.insert(), row)

    def append_many(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Insert rows in one transaction: all are committed on return, or none is."""
        rows = [self._normalise(record) for record in records]
        if not rows:
            return
        if self._write_lock is None:
            with self.engine.begin() as conn:
                conn.execute(self.table.insert(), rows)
            return
        with self._write_lock, self.engine.begin() as conn:
            conn.execute(self.table.insert(), rows)

    def count(self) -> int:
        """Number of rows in the log."""
        with self.engine.connect() as conn:
            query = sa.select(sa.func.count()).select_from(self.table)
            return int(conn.execute(query).scalar_one())

    def read(self, since: datetime | None = None, limit: int | None = None) -> pd.DataFrame:
        """The newest `limit` rows (all by default) at or after `since`, oldest first."""
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        columns = [self.table.c[name] for name in PREDICTION_LOG_COLUMNS]
        query = sa.select(*columns).order_by(self.table.c.ts.desc(), self.table.c.seq.desc())
        if since is not None:
            bound = _utc(since)
            query = query.where(
                self.table.c.ts >= (bound.replace(tzinfo=None) if self.is_sqlite else bound)
            )
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        frame = pd.DataFrame(
            [dict(r) for r in reversed(rows)], columns=list(PREDICTION_LOG_COLUMNS)
        )
        frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
        for name in _NULLABLE:  # NULL stays None, not NaN, for the nullable text columns
            frame[name] = frame[name].astype(object).where(frame[name].notna(), None)
        return PredictionLog.validate(frame)

    def purge_audio(self, older_than_days: int, audio_dir: Path) -> int:
        """Delete stored audio older than the retention; null its audio_path. Returns files removed.

        Also removes files in `audio_dir` older than the retention that no row points to (a
        crash between writing the file and committing the row leaves such orphans).
        """
        if older_than_days < 0:
            raise ValueError(f"older_than_days must be >= 0, got {older_than_days}")
        cutoff = datetime.now(UTC) - timedelta(days=older_than_days)
        bound = cutoff.replace(tzinfo=None) if self.is_sqlite else cutoff
        root = audio_dir.resolve()
        t = self.table
        with self.engine.connect() as conn:
            expired = conn.execute(
                sa.select(t.c.seq, t.c.audio_path).where(
                    t.c.audio_path.is_not(None), t.c.ts < bound
                )
            ).all()
        removed = 0
        for _, stored in expired:
            path = (root / stored).resolve()
            if not path.is_relative_to(root):
                logger.warning("not deleting %s: outside the audio folder %s", path, root)
                continue
            try:
                path.unlink()  # another worker process may have purged it just now
                removed += 1
            except FileNotFoundError:
                pass
        seqs = [seq for seq, _ in expired]
        with self.engine.begin() as conn:
            for start in range(0, len(seqs), 500):  # stay under SQLite's bound-variable limit
                chunk = seqs[start : start + 500]
                conn.execute(t.update().where(t.c.seq.in_(chunk)).values(audio_path=None))
        if root.is_dir():
            with self.engine.connect() as conn:
                kept = {
                    str((root / p).resolve())
                    for (p,) in conn.execute(
                        sa.select(t.c.audio_path).where(t.c.audio_path.is_not(None))
                    )
                }
            for path in root.rglob("*"):
                try:
                    if (
                        path.is_file()
                        and str(path.resolve()) not in kept
                        and datetime.fromtimestamp(path.stat().st_mtime, UTC) < cutoff
                    ):
                        path.unlink()
                        removed += 1
                except FileNotFoundError:  # purged meanwhile by another worker process
                    pass
        return removed
