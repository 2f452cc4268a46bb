"""The prediction log: contract round trip, concurrent appends, WAL, retention purge."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from data_contracts.prediction_log import PREDICTION_LOG_COLUMNS, PredictionLog
from data_contracts.prediction_store import PredictionStore


def record(**overrides: object) -> dict[str, object]:
    row: dict[str, object] = {
        "request_id": uuid.uuid4().hex,
        "ts": datetime.now(UTC),
        "model_version": "3",
        "model_tag": "voicecycle-asr:abc",
        "transcript": "weather in paris",
        "confidence": 0.81,
        "latency_ms": 42.5,
        "duration_s": 2.1,
        "rms_dbfs": -24.0,
        "peak_dbfs": -6.0,
        "clipping_share": 0.0,
        "silence_share": 0.2,
        "snr_db_estimate": 18.0,
        "spectral_centroid_hz": 1500.0,
        "spectral_bandwidth_hz": 900.0,
        "spectral_rolloff_hz": 3200.0,
        "low_band_share": 0.3,
        "n_words": 3,
        "client": '{"app": "4.2.0"}',
        "consent": False,
        "audio_path": None,
    }
    row.update(overrides)
    return row


@pytest.fixture
def store(tmp_path: Path) -> Iterator[PredictionStore]:
    store = PredictionStore(f"sqlite:///{tmp_path / 'log' / 'predictions.db'}")
    yield store
    store.close()


def test_round_trip_through_the_contract(store: PredictionStore) -> None:
    t0 = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)
    rows = [
        record(ts=t0 + timedelta(seconds=i), audio_path=f"a{i}.wav" if i % 2 else None)
        for i in range(5)
    ]
    rows[2]["client"] = {"device": "pixel", "app": "4.2.0"}  # a dict is stored as JSON
    for row in reversed(rows):  # insertion order differs from time order
        store.append(row)

    frame = store.read()

    assert list(frame.columns) == list(PREDICTION_LOG_COLUMNS)
    PredictionLog.validate(frame)
    assert list(frame["request_id"]) == [r["request_id"] for r in rows]  # time order
    assert str(frame["ts"].dtype) == "datetime64[ns, UTC]"
    assert frame["ts"].iloc[0] == pd.Timestamp(t0)
    assert frame["client"].iloc[2] == '{"app": "4.2.0", "device": "pixel"}'
    assert frame["audio_path"].tolist() == [None, "a1.wav", None, "a3.wav", None]
    assert store.count() == 5

    newest = store.read(limit=2)
    assert list(newest["request_id"]) == [rows[3]["request_id"], rows[4]["request_id"]]
    since = store.read(since=t0 + timedelta(seconds=3))
    assert list(since["request_id"]) == [rows[3]["request_id"], rows[4]["request_id"]]
    assert store.read(since=t0 + timedelta(days=1)).empty


def test_empty_log_reads_as_an_empty_valid_frame(store: PredictionStore) -> None:
    frame = store.read()
    assert frame.empty
    assert list(frame.columns) == list(PREDICTION_LOG_COLUMNS)


def test_a_log_with_the_old_simulator_columns_still_opens_and_keeps_them(
    tmp_path: Path,
) -> None:
    """A log written when the API took `scenario`/`reference`: old rows stay readable, their
    stored values are never dropped, and new rows do not write those columns."""
    import sqlalchemy as sa

    url = f"sqlite:///{tmp_path / 'predictions.db'}"
    engine = sa.create_engine(url)
    meta = sa.MetaData()
    old = sa.Table(
        "prediction_log",
        meta,
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        *(sa.Column(c, sa.Text) for c in PREDICTION_LOG_COLUMNS),
        sa.Column("scenario", sa.String(128), nullable=True),
        sa.Column("reference", sa.Text, nullable=True),
    )
    meta.create_all(engine)
    legacy = record(ts=datetime(2025, 1, 1, tzinfo=UTC).replace(tzinfo=None))
    with engine.begin() as conn:
        conn.execute(old.insert(), {**legacy, "scenario": "mixed", "reference": "call mom"})
    engine.dispose()

    store = PredictionStore(url)
    fresh = record()
    store.append(fresh)
    frame = store.read()
    store.close()
    assert list(frame.columns) == list(PREDICTION_LOG_COLUMNS)
    assert list(frame["request_id"]) == [legacy["request_id"], fresh["request_id"]]
    with sa.create_engine(url).connect() as conn:
        kept = conn.execute(sa.text("SELECT request_id, scenario, reference FROM prediction_log"))
        assert {r[0]: (r[1], r[2]) for r in kept} == {
            legacy["request_id"]: ("mixed", "call mom"),
            fresh["request_id"]: (None, None),
        }


def test_the_contract_has_no_simulator_fields() -> None:
    assert not {"reference", "scenario"} & set(PREDICTION_LOG_COLUMNS)


@pytest.mark.parametrize(
    ("change", "message"),
    [({"surprise": 1}, "unknown fields"), ({"transcript": None}, None)],
)
def test_append_rejects_malformed_records(
    store: PredictionStore, change: dict[str, object], message: str | None
) -> None:
    row = record()
    row.update(change)
    if message is None:  # a NOT NULL column left empty: the database refuses
        with pytest.raises(Exception):  # noqa: B017 - sqlalchemy's IntegrityError
            store.append(row)
    else:
        with pytest.raises(ValueError, match=message):
            store.append(row)
    assert store.count() == 0


def test_missing_fields_are_named(store: PredictionStore) -> None:
    row = record()
    del row["confidence"]
    with pytest.raises(ValueError, match="confidence"):
        store.append(row)


def test_duplicate_request_ids_are_refused(store: PredictionStore) -> None:
    row = record()
    store.append(row)
    with pytest.raises(Exception):  # noqa: B017 - the unique constraint
        store.append(row)
    assert store.count() == 1


def test_concurrent_appends_all_land(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'predictions.db'}"
    stores = [PredictionStore(url), PredictionStore(url)]  # two "processes'" engines
    ids: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def writer(k: int) -> None:
        try:
            for _ in range(25):
                row = record()
                stores[k % 2].append(row)
                with lock:
                    ids.append(str(row["request_id"]))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert not errors
    assert stores[0].count() == 200
    assert set(stores[1].read()["request_id"]) == set(ids)
    for s in stores:
        s.close()


def test_sqlite_runs_in_wal_mode(store: PredictionStore) -> None:
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000


def test_in_memory_sqlite_is_refused() -> None:
    with pytest.raises(ValueError, match="file-backed"):
        PredictionStore("sqlite://")


def test_purge_audio_respects_retention(store: PredictionStore, tmp_path: Path) -> None:
    audio_dir = tmp_path / "prediction_audio"
    audio_dir.mkdir()
    now = datetime.now(UTC)

    def stored(age_days: float) -> tuple[str, Path]:
        row = record(ts=now - timedelta(days=age_days), consent=True)
        path = audio_dir / f"{row['request_id']}.wav"
        path.write_bytes(b"RIFF")
        row["audio_path"] = str(path)
        store.append(row)
        return str(row["request_id"]), path

    old_id, old_path = stored(40)
    new_id, new_path = stored(2)
    orphan_old = audio_dir / "orphan-old.wav"  # written, but the row never committed
    orphan_old.write_bytes(b"RIFF")
    old_mtime = time.time() - 40 * 86400
    os.utime(orphan_old, (old_mtime, old_mtime))
    orphan_new = audio_dir / "orphan-new.wav"
    orphan_new.write_bytes(b"RIFF")

    removed = store.purge_audio(older_than_days=30, audio_dir=audio_dir)

    assert removed == 2
    assert not old_path.exists() and not orphan_old.exists()
    assert new_path.exists() and orphan_new.exists()
    paths = store.read().set_index("request_id")["audio_path"]
    assert paths[old_id] is None
    assert paths[new_id] == str(new_path)
    assert store.purge_audio(older_than_days=30, audio_dir=audio_dir) == 0  # idempotent
