"""BentoML packaging: the champion recogniser into the model store, the service into a Bento.

The store and build functions are plain; the steps at the end are the packaging flow's
tasks. BentoML writes to the store under `BENTOML_HOME`; the caller sets it (from
`state.bentoml_home`). Serving the service is deployments/' business (deployments/arguments.py
makes the `bentoml serve` command); this module only names the model a Bento packs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from prefect import task

from data_contracts.scoping import Scope

BENTOFILE = Path("deployments") / "bentofile.yaml"
RECOGNIZER_FILES = ("weights.pt", "config.json")


def _bentoml_home() -> Path:
    # BentoML has no public accessor for the home it resolved (env var or ~/bentoml).
    from bentoml._internal.configuration.containers import BentoMLContainer

    return Path(BentoMLContainer.bentoml_home.get()).resolve()


def import_recognizer(
    recognizer_dir: Path, model_name: str, metadata: Mapping[str, Any], labels: Mapping[str, str]
) -> str:
    """Copy a saved Recognizer into the BentoML store; returns the model tag.

    Idempotent on `metadata["registry_version"]`: if the newest model of this name already
    carries that registry version, its tag is returned and nothing is written; an older import
    of it (after a rollback) is imported again so that `latest` points at it.
    """
    import bentoml
    from bentoml.exceptions import NotFound

    missing = [name for name in RECOGNIZER_FILES if not (recognizer_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{recognizer_dir} is not a saved Recognizer: missing {missing} "
            f"(expected {list(RECOGNIZER_FILES)})"
        )
    version = metadata.get("registry_version")
    if version is not None:
        try:
            existing_models = bentoml.models.list(model_name)
        except NotFound:  # no model of this name yet
            existing_models = []
        newest = max(existing_models, key=lambda m: m.info.creation_time, default=None)
        for existing in existing_models:
            same = str(existing.info.metadata.get("registry_version")) == str(version)
            # a rollback re-promotes an older version: import it again so it becomes `latest`,
            # which is what the running service follows
            if same and existing is newest:
                return str(existing.tag)
    with bentoml.models.create(
        model_name,
        metadata=dict(metadata),
        labels={str(k): str(v) for k, v in labels.items()},
    ) as model:
        shutil.copytree(recognizer_dir, model.path, dirs_exist_ok=True)
    return str(model.tag)


def build_bento(service_dir: Path, model_tag: str, timeout_s: float = 600.0) -> str:
    """Build the serving Bento for `model_tag` from the repository at `service_dir`; its tag.

        Runs `bentoml build --arg model_tag=<tag>` in a child process: the service module,
    imported fresh with that template argument, declares (and so packs) that model, and the
    Bento keeps the argument, so serving the Bento serves the model it packs. Offline:
    packages are not locked. A BENTOML_HOME inside `service_dir` (the default scope keeps it
    in workspace/bentoml) is excluded from the build context, so the store is never copied
    into the Bento it is building.
    """
    import bentoml
    from bentoml.exceptions import NotFound

    service_dir = service_dir.resolve()
    home = _bentoml_home()
    try:
        model = bentoml.models.get(model_tag)
    except NotFound:
        raise ValueError(f"model {model_tag} is not in the BentoML store at {home}") from None
    exact_tag = str(model.tag)

    config = yaml.safe_load((service_dir / BENTOFILE).read_text())
    if home.is_relative_to(service_dir):
        inside = f"{home.relative_to(service_dir).as_posix()}/"
        config["exclude"] = [*config.get("exclude", []), inside]
    config["labels"] = {**config.get("labels", {}), "model_tag": exact_tag.replace(":", "-")}
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True"}
    with tempfile.TemporaryDirectory(prefix="voicecycle-bentofile-") as tmp:
        bentofile = Path(tmp) / "bentofile.yaml"
        bentofile.write_text(yaml.safe_dump(config, sort_keys=False))
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "bentoml",
                "build",
                "-f",
                str(bentofile),
                "-o",
                "tag",
                "--arg",
                f"model_tag={exact_tag}",
                str(service_dir),
            ],
            cwd=service_dir,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    if done.returncode != 0:
        raise RuntimeError(f"bentoml build failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("__tag__:"):
            return line.removeprefix("__tag__:").strip()
    raise RuntimeError(f"bentoml build printed no tag:\n{done.stdout[-2000:]}")


# -- pipeline steps (the packaging flow wires these) ---------------------------------------


class NoChampion(RuntimeError):
    """The registry has no champion (nothing trained and promoted yet)."""


class UnusableModel(RuntimeError):
    """A registered model whose files are missing or do not load: never put into the store."""


def check_recognizer(folder: Path, what: str) -> None:
    """Refuse a downloaded recogniser that is incomplete or does not load (a corrupt or
    truncated weights file, a config that does not match the code), before the store sees it;
    the running service then keeps the model it serves."""
    from models.recognizer import Recognizer

    fix = "register a good version (train again) or `voicecycle rollback` to the previous one"
    missing = [name for name in RECOGNIZER_FILES if not (folder / name).is_file()]
    if missing:
        raise UnusableModel(f"{what} is missing {missing} in the registry ({folder}); {fix}")
    try:
        Recognizer.load(folder)
    except Exception as exc:  # any failure to load is the model's fault here
        detail = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        raise UnusableModel(f"{what} does not load ({detail}); {fix}") from exc


@task(name="resolve-champion", retries=2, retry_delay_seconds=2)
def resolve_champion(scope: Scope) -> str:
    """The registry version the champion alias points at (error if there is none)."""
    from tasks.registry import champion_version

    version = champion_version(scope)
    if version is None:
        raise NoChampion(
            f"model {scope.registry.model_name!r} has no champion to package; "
            "run the training flow first"
        )
    return version


@task(name="import-to-bentoml", retries=1)
def import_champion(scope: Scope, version: str) -> str:
    """Download the registered version and import it, with its lineage, into the store."""
    import mlflow

    from tasks.registry import download_recognizer, version_tags

    name = scope.registry.model_name
    tags = version_tags(name, version)
    client = mlflow.MlflowClient()
    run_id = client.get_model_version(name, version).run_id
    run_metrics = client.get_run(run_id).data.metrics if run_id else {}
    metrics = {
        k: round(v, 4)
        for k, v in run_metrics.items()
        if k.startswith(("wer_", "cer_", "test_", "cross_synth_"))
    }
    try:
        folder = download_recognizer(name, version)
    except (FileNotFoundError, OSError) as exc:
        raise UnusableModel(f"model {name!r} version {version}: {exc}") from exc
    check_recognizer(folder, f"model {name!r} version {version}")
    metadata = {
        "registry_version": version,
        "model_name": name,
        "dataset_version": tags.get("dataset_version", ""),
        "augmented_version": tags.get("augmented_version", ""),
        "git_commit": tags.get("git_commit", ""),
        "gate": tags.get("gate", ""),
        "metrics": metrics,
    }
    return import_recognizer(folder, name, metadata, {"registry_version": version})


@task(name="build-bento")
def build_bento_task(model_tag: str) -> str:
    """Build the Bento for a model tag from this repository."""
    return build_bento(Path(__file__).resolve().parents[1], model_tag)
