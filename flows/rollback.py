"""Rollback: the champion alias back to the previous champion, and that model into the
BentoML store as `latest`, which the running service follows at its next poll."""

from __future__ import annotations

from prefect import flow

from data_contracts.scoping import Scope
from flows.package import package
from tasks.retraining import roll_back_champion
from tasks.scoping import validate_scope


@flow(name="rollback", log_prints=True)
def rollback(scope: Scope) -> dict[str, object]:
    """Undo the last promotion; the service serves the restored champion after its next poll."""
    validate_scope(scope)
    before, after = roll_back_champion(scope)
    packaged = package(scope, build=False)
    return {"from_version": before, "to_version": after, **packaged}
