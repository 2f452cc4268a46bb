"""MLflow: runs, the model registry, the champion/challenger aliases and rollback."""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import io
import json
import os
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np
import pandas as pd
import soundfile as sf
from prefect import task

from data_contracts.scoping import Scope
from models.audio import SAMPLE_RATE
from tasks.mlflow_store import rebase_moved_store

CHAMPION = "champion"
CHALLENGER = "challenger"
HISTORY_TAG = "champion_history"
# The pyfunc is logged as code (models-from-code) from the registry's own room, so tasks/
# never reach into deployments/.
PYFUNC_CODE = Path(__file__).resolve().with_name("mlflow_model.py")
FLOW_RUN_TAG = "prefect_flow_run_id"  # set by tasks.tracking.run_tags
OWNER_TAG = "voicecycle.owner"  # host:pid of the process that created a run
STALE_TAG = "voicecycle.stale"  # why a RUNNING run was marked KILLED at a later start


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    version: str
    run_id: str
    model_uri: str


def configure_mlflow(tracking_uri: str, experiment: str, artifact_root: Path) -> str:
    """Point MLflow at the tracking store; create the experiment with artifacts in the workspace."""
    import mlflow

    rebase_moved_store(tracking_uri, experiment, artifact_root)  # the workspace moved
    mlflow.set_tracking_uri(tracking_uri)
    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    found = mlflow.get_experiment_by_name(experiment)
    if found is not None:
        mlflow.set_experiment(experiment_id=found.experiment_id)
        return str(found.experiment_id)
    if tracking_uri.startswith(("http://", "https://")):
        # a tracking server keeps the artifacts where it serves them (--serve-artifacts)
        exp_id = mlflow.create_experiment(experiment)
    else:
        artifact_root.mkdir(parents=True, exist_ok=True)
        exp_id = mlflow.create_experiment(
            experiment, artifact_location=artifact_root.resolve().as_uri()
        )
    mlflow.set_experiment(experiment_id=exp_id)
    return str(exp_id)


def code_version(repo: Path | None = None) -> dict[str, str]:
    """The git commit the code runs at, and whether the tree had uncommitted changes."""
    cwd = repo or Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = (
            subprocess.run(
                ["git", "status", "--porcelain"],
                cwd=cwd,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            != ""
        )
    except (OSError, subprocess.CalledProcessError):
        return {"git_commit": "unknown", "git_dirty": "unknown"}
    return {"git_commit": sha, "git_dirty": str(dirty).lower()}


def input_example(sample_rate: int = SAMPLE_RATE) -> pd.DataFrame:
    """A small valid request for the model signature: 0.25 s of faint noise as WAV, base64."""
    rng = np.random.default_rng(0)
    audio = (rng.standard_normal(sample_rate // 4) * 1e-3).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, audio, sample_rate, format="WAV", subtype="PCM_16")
    return pd.DataFrame({"audio_base64": [base64.b64encode(buf.getvalue()).decode("ascii")]})


def version_of_run(model_name: str, run_id: str) -> RegisteredModel | None:
    """The version of `model_name` already registered from this run, if any."""
    import mlflow

    client = mlflow.MlflowClient()
    if not client.search_registered_models(filter_string=f"name = '{model_name}'"):
        return None
    found = client.search_model_versions(f"name = '{model_name}' and run_id = '{run_id}'")
    if not found:
        return None
    latest = max(found, key=lambda v: int(v.version))
    return RegisteredModel(model_name, str(latest.version), run_id, str(latest.source))


# No retries: logging a model and registering it are not idempotent by themselves; instead a
# second call for the same run returns the version the first one registered.
@task(name="register-model")
def register_model(
    run_id: str, recognizer_dir: Path, model_name: str, tags: dict[str, str]
) -> RegisteredModel:
    """Log the recogniser (weights + config, loaded by code, with a signature and an input
    example) to the run and register a version; a run registers at most one version."""
    import mlflow
    from mlflow.models import infer_signature

    existing = version_of_run(model_name, run_id)
    if existing is not None:
        return existing
    example = input_example()
    signature = infer_signature(
        example, pd.DataFrame({"transcript": ["play jazz"], "confidence": [0.9]})
    )
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pyfunc.log_model(
            name="recognizer",
            python_model=str(PYFUNC_CODE),
            artifacts={"recognizer": str(recognizer_dir)},
            signature=signature,
            input_example=example,
        )
    version = mlflow.register_model(info.model_uri, model_name, tags=tags)
    client = mlflow.MlflowClient()
    client.set_registered_model_alias(model_name, CHALLENGER, version.version)
    return RegisteredModel(model_name, str(version.version), run_id, info.model_uri)


def alias_version(model_name: str, alias: str) -> str | None:
    """The version an alias points at, or None."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return str(mlflow.MlflowClient().get_model_version_by_alias(model_name, alias).version)
    except MlflowException:
        return None


def champion_version(scope: Scope) -> str | None:
    """The registry version the scope's champion alias points at (None: no champion yet)."""
    configure_mlflow(
        scope.state.url("mlflow_tracking_uri"),
        scope.registry.experiment,
        scope.state.path("mlflow_artifacts"),
    )
    return alias_version(scope.registry.model_name, CHAMPION)


def _history(client: Any, model_name: str) -> list[str]:
    tags = client.get_registered_model(model_name).tags
    return json.loads(tags.get(HISTORY_TAG, "[]"))


def registry_lock_url(scope: Scope) -> str:
    """Where champion moves are serialised: a Postgres advisory lock on the prediction log's
    cluster when it is on Postgres (the team's retrainers all reach it), else a file lock
    beside the SQLite tracking store (or in the workspace for any other store)."""
    log = scope.state.url("prediction_log_url")
    if log.startswith("postgresql"):
        return log
    tracking = scope.state.url("mlflow_tracking_uri")
    if tracking.startswith("sqlite:///"):
        return Path(tracking.removeprefix("sqlite:///") + ".lock").resolve().as_uri()
    return (scope.state.path("run_dir") / "registry.lock").resolve().as_uri()


def _lock_key(model_name: str) -> int:
    """A signed 64-bit advisory-lock key per registered model."""
    return int.from_bytes(hashlib.sha256(model_name.encode()).digest()[:8], "big", signed=True)


@contextlib.contextmanager
def registry_lock(lock_url: str, model_name: str) -> Iterator[None]:
    """Hold the model's registry lock (see `registry_lock_url`) for the block."""
    if lock_url.startswith("postgresql"):
        import psycopg
        from sqlalchemy.engine import make_url

        url = make_url(lock_url)
        conninfo = psycopg.conninfo.make_conninfo(
            host=url.host or "", port=url.port or 5432, user=url.username or "",
            password=url.password or "", dbname=url.database or "",
        )  # fmt: skip
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (_lock_key(model_name),))
            try:
                yield
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (_lock_key(model_name),))
        return
    path = Path(unquote(urlsplit(lock_url).path))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass(frozen=True)
class Promotion:
    """Whether the champion alias moved to the version, and why (or why not)."""

    promoted: bool
    reason: str


@task(name="promote-champion")
def promote(
    model_name: str,
    version: str,
    reason: str,
    *,
    lock_url: str | None = None,
    gated_against: str | None = None,
) -> Promotion:
    """Move the champion alias to `version`, remembering the previous one for rollback.

    With `lock_url` it is a compare-and-set under the registry lock: the alias moves only if
    it still points at `gated_against` (None: no champion), the version the gate compared
    with; when another retrain moved it meanwhile, nothing moves and the version says why.
    """
    import mlflow

    client = mlflow.MlflowClient()
    guard = registry_lock(lock_url, model_name) if lock_url else contextlib.nullcontext()
    with guard:
        current = alias_version(model_name, CHAMPION)
        if lock_url and current != gated_against:
            why = (
                f"not promoted: the champion moved from {gated_against or 'none'} to {current} "
                f"(another retrain) while this version was gated against "
                f"{gated_against or 'no champion'}; the next retrain compares with {current}"
            )
            client.set_model_version_tag(model_name, version, "promoted", "false")
            client.set_model_version_tag(model_name, version, "promotion_refused", why)
            run_id = client.get_model_version(model_name, version).run_id
            if run_id:  # the run says so too
                client.set_tag(run_id, "voicecycle.promotion", why)
            return Promotion(False, why)
        history = _history(client, model_name)
        client.set_registered_model_alias(model_name, CHAMPION, version)
        client.set_registered_model_tag(model_name, HISTORY_TAG, json.dumps(history + [version]))
        client.set_model_version_tag(model_name, version, "promotion", reason[:5000])
        client.set_model_version_tag(model_name, version, "gated_against", gated_against or "")
    return Promotion(True, reason)


def rollback(model_name: str) -> tuple[str, str]:
    """Move champion back to the previous champion; return (from_version, to_version)."""
    import mlflow

    client = mlflow.MlflowClient()
    history = _history(client, model_name)
    current = alias_version(model_name, CHAMPION)
    if current is None or len(history) < 2:
        raise RuntimeError(
            f"cannot roll back {model_name!r}: it has no earlier champion "
            f"(champion history: {history or 'empty'})"
        )
    previous = history[-2]
    client.set_registered_model_alias(model_name, CHAMPION, previous)
    client.set_registered_model_tag(model_name, HISTORY_TAG, json.dumps(history[:-1]))
    client.set_model_version_tag(model_name, current, "rolled_back", "true")
    return current, previous


def download_recognizer(model_name: str, alias_or_version: str, dest: Path | None = None) -> Path:
    """Download the recogniser folder (weights.pt + config.json) of a registered version."""
    import mlflow

    ref = (
        f"models:/{model_name}/{alias_or_version}"
        if alias_or_version.isdigit()
        else f"models:/{model_name}@{alias_or_version}"
    )
    target = dest or Path(tempfile.mkdtemp(prefix="voicecycle-model-"))
    local = mlflow.artifacts.download_artifacts(artifact_uri=ref, dst_path=str(target))
    import yaml

    mlmodel = yaml.safe_load((Path(local) / "MLmodel").read_text())
    pyfunc_conf = mlmodel.get("flavors", {}).get("python_function", {})
    rel = pyfunc_conf.get("artifacts", {}).get("recognizer", {}).get("path", "")
    folder = Path(local) / rel
    if not rel or not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{ref} has no recognizer artifacts (looked in {folder})")
    return folder


def version_tags(model_name: str, version: str) -> dict[str, str]:
    """The tags of a model version (dataset version, code version, metrics)."""
    import mlflow

    return dict(mlflow.MlflowClient().get_model_version(model_name, version).tags)


# No retries: a retried create_run would open a second run. Idempotent instead: a run of the
# same Prefect flow run (tag FLOW_RUN_TAG) and name is found and returned.
@task(name="start-mlflow-run")
def start_run(
    tracking_uri: str,
    experiment: str,
    artifact_root: Path,
    run_name: str,
    tags: dict[str, str],
    params: dict[str, str],
) -> str:
    """Create an MLflow run with its tags and flat params; return its id (logged to by id)."""
    import mlflow

    experiment_id = configure_mlflow(tracking_uri, experiment, artifact_root)
    client = mlflow.MlflowClient()
    mark_stale_runs(client, experiment_id)
    run_id = None
    if FLOW_RUN_TAG in tags:
        found = client.search_runs(
            [experiment_id],
            filter_string=(
                f"tags.{FLOW_RUN_TAG} = '{tags[FLOW_RUN_TAG]}' "
                f"and attributes.run_name = '{run_name}'"
            ),
            max_results=1,
        )
        run_id = found[0].info.run_id if found else None
    if run_id is None:
        owner = {OWNER_TAG: f"{socket.gethostname()}:{os.getpid()}"}
        run_id = client.create_run(
            experiment_id, run_name=run_name, tags={**tags, **owner}
        ).info.run_id
    log_params(run_id, params)
    return str(run_id)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def mark_stale_runs(client: Any, experiment_id: str) -> list[str]:
    """Runs left RUNNING by a process of this machine that is gone (killed mid-training)
    marked KILLED, so that no run stays RUNNING forever; `train --resume RUN_ID` can still
    continue one. Runs of other machines, or of a live process, are left alone."""
    host = socket.gethostname()
    marked = []
    for run in client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'"):
        owner_host, _, pid = str(run.data.tags.get(OWNER_TAG, "")).rpartition(":")
        if owner_host != host or not pid.isdigit() or _alive(int(pid)):
            continue
        client.set_tag(run.info.run_id, STALE_TAG, f"its process {pid} was gone")
        client.set_terminated(run.info.run_id, status="KILLED")
        marked.append(run.info.run_id)
    return marked


def log_params(run_id: str, params: dict[str, str]) -> None:
    """Flat params, in batches of MLflow's limit; the same value logged twice is a no-op."""
    import mlflow
    from mlflow.entities import Param

    client = mlflow.MlflowClient()
    items = [Param(k, str(v)[:6000]) for k, v in params.items()]
    for start in range(0, len(items), 100):
        client.log_batch(run_id, params=items[start : start + 100])


@task(name="log-to-mlflow", retries=2, retry_delay_seconds=3)
def log_run_results(
    run_id: str,
    history: list[dict[str, float]],
    metrics: dict[str, float],
    artifacts: list[Path],
    params: dict[str, str] | None = None,
    status: str = "FINISHED",
) -> None:
    """Per-evaluation metrics (by step), final metrics, late params (the trained model's
    architecture) and artifact files; close the run."""
    import mlflow
    from mlflow.entities import Metric

    client = mlflow.MlflowClient()
    if params:
        log_params(run_id, params)
    # Timestamps from the run's start and each evaluation's elapsed time, not the clock: a
    # retry then writes identical metrics, which MLflow keeps once (safe to retry).
    started = int(client.get_run(run_id).info.start_time or 0)
    stamp = {int(rec["step"]): started + int(1000 * rec.get("elapsed_s", 0.0)) for rec in history}
    batch = [
        Metric(key, float(rec[key]), stamp[int(rec["step"])], int(rec["step"]))
        for rec in history
        for key in ("train_loss", "dev_wer_greedy", "lr")
        if key in rec and rec[key] == rec[key]  # NaN (no loss yet at a warm start) is skipped
    ]
    end = max(stamp.values(), default=started)
    batch += [Metric(k, float(v), end, 0) for k, v in metrics.items() if v == v]  # skip NaN
    for start in range(0, len(batch), 900):
        client.log_batch(run_id, metrics=batch[start : start + 900])
    for path in artifacts:
        if path.is_dir():
            client.log_artifacts(run_id, str(path), artifact_path=path.name)
        elif path.is_file():
            client.log_artifact(run_id, str(path))
    client.set_terminated(run_id, status=status)
