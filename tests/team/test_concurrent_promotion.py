"""Concurrent promotions on the one-laptop registry (SQLite MLflow, a file lock beside it)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import tiny_scope
from tests.team.promotion_contest import assert_one_champion, contest


def test_two_promotions_at_once_leave_exactly_one_champion(tmp_path: Path) -> None:
    from tasks.registry import registry_lock_url

    scope = tiny_scope(tmp_path / "ws")
    lock_url = registry_lock_url(scope)
    assert lock_url.startswith("file://") and lock_url.endswith("mlflow.db.lock")
    tracking = scope.state.url("mlflow_tracking_uri")
    Path(tracking.removeprefix("sqlite:///")).parent.mkdir(parents=True)
    assert_one_champion(contest(tracking, lock_url, "contest"))


def test_the_lock_is_on_postgres_when_the_prediction_log_is() -> None:
    from tasks.registry import registry_lock_url

    scope = tiny_scope(Path("/tmp/unused"))
    url = "postgresql+psycopg://team:pw@127.0.0.1:5999/predictions"
    scope = scope.model_copy(
        update={"state": scope.state.model_copy(update={"prediction_log_url": url})}
    )
    assert registry_lock_url(scope) == url
