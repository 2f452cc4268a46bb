"""Package: the champion (MLflow alias) -> BentoML model store (with lineage) -> a Bento."""

from __future__ import annotations

from prefect import flow

from data_contracts.scoping import Scope
from tasks.packaging import build_bento_task, import_champion, resolve_champion
from tasks.scoping import validate_scope


@flow(name="package", log_prints=True)
def package(scope: Scope, build: bool = True) -> dict[str, str]:
    """Put the current champion into the BentoML store (the running service picks it up)."""
    validate_scope(scope)
    champion = resolve_champion(scope)
    model_tag = import_champion(scope, champion)
    bento_tag = build_bento_task(model_tag) if build else ""
    return {"registry_version": champion, "model_tag": model_tag, "bento_tag": bento_tag}
