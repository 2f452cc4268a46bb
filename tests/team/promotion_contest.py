"""Two retrains reaching the promotion step at once, each in its own process, both gated
against the same champion: the registry's compare-and-set lets exactly one move the alias,
and the other version (and its run) says why it did not. Shared by the SQLite test and the
team test (MLflow server + Postgres advisory lock)."""

from __future__ import annotations

import multiprocessing as mp
from typing import Any

MODEL = "contest-asr"


def register_version(tracking_uri: str, experiment: str, k: int) -> str:
    """A real registered version of MODEL from a run with one artifact."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    client = mlflow.MlflowClient()
    found = client.get_experiment_by_name(experiment)
    exp_id = found.experiment_id if found else client.create_experiment(experiment)
    run = client.create_run(exp_id, run_name=f"retrain-{k}")
    client.log_text(run.info.run_id, f"weights of retrain {k}", "model/weights.txt")
    client.set_terminated(run.info.run_id)
    if not client.search_registered_models(filter_string=f"name = '{MODEL}'"):
        client.create_registered_model(MODEL)
    version = client.create_model_version(
        MODEL, f"{run.info.artifact_uri}/model", run_id=run.info.run_id
    )
    return str(version.version)


def _contender(
    tracking_uri: str, lock_url: str, version: str, gated_against: str | None, barrier: Any
) -> tuple[bool, str]:
    import mlflow

    from tasks.registry import promote

    mlflow.set_tracking_uri(tracking_uri)
    barrier.wait(timeout=60)
    outcome = promote.fn(
        MODEL, version, f"gate passed vs {gated_against}", lock_url=lock_url,
        gated_against=gated_against,
    )  # fmt: skip
    return outcome.promoted, outcome.reason


def contest(tracking_uri: str, lock_url: str, experiment: str) -> dict[str, Any]:
    """Register two versions, let two processes promote them at once over the same champion
    (none yet); what the registry holds afterwards."""
    import json

    import mlflow

    from tasks.registry import CHAMPION, HISTORY_TAG, alias_version

    versions = [register_version(tracking_uri, experiment, k) for k in (1, 2)]
    ctx = mp.get_context("spawn")
    barrier = ctx.Manager().Barrier(2)
    with ctx.Pool(2) as pool:
        waiting = [
            pool.apply_async(_contender, (tracking_uri, lock_url, v, None, barrier))
            for v in versions
        ]
        outcomes = [w.get(timeout=120) for w in waiting]
    mlflow.set_tracking_uri(tracking_uri)
    client = mlflow.MlflowClient()
    tags = {v: dict(client.get_model_version(MODEL, v).tags) for v in versions}
    runs = {v: client.get_run(client.get_model_version(MODEL, v).run_id) for v in versions}
    return {
        "versions": versions,
        "outcomes": dict(zip(versions, outcomes, strict=True)),
        "champion": alias_version(MODEL, CHAMPION),
        "history": json.loads(client.get_registered_model(MODEL).tags.get(HISTORY_TAG, "[]")),
        "tags": tags,
        "run_tags": {v: dict(r.data.tags) for v, r in runs.items()},
        "run_status": {v: r.info.status for v, r in runs.items()},
    }


def assert_one_champion(result: dict[str, Any]) -> None:
    """Exactly one promoted; the loser recorded, unpromoted, with the reason."""
    outcomes = result["outcomes"]
    winners = [v for v, (promoted, _) in outcomes.items() if promoted]
    assert len(winners) == 1, outcomes
    (winner,) = winners
    (loser,) = [v for v in result["versions"] if v != winner]
    assert result["champion"] == winner
    assert result["history"] == [winner]
    why = outcomes[loser][1]
    assert f"moved from none to {winner}" in why, why
    assert result["tags"][loser]["promoted"] == "false"
    assert result["tags"][loser]["promotion_refused"] == why
    assert result["run_tags"][loser]["voicecycle.promotion"] == why
    assert result["tags"][winner]["promotion"] == f"gate passed vs {None}"
    assert set(result["run_status"].values()) == {"FINISHED"}  # both runs kept
