"""The scope's `state` section: where every piece of state lives and every server's address.

Paths are relative to `workspace` unless absolute; URLs may hold `{workspace}` and `{NAME}`
secrets filled from `credentials_file` or the environment. `Scope.state` is this model
(re-exported by `data_contracts.scoping`).
"""

from __future__ import annotations

import os
import string
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field


class StateLocations(BaseModel):
    """Where every piece of state lives; relative paths are under `workspace`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    workspace: Path = Path("workspace")
    corpus_dir: Path = Path("corpus")
    datasets_dir: Path = Path("datasets")
    augmented_dir: Path = Path("augmented")
    features_dir: Path = Path("features")
    runs_dir: Path = Path("runs")
    reports_dir: Path = Path("reports")
    evaluations_dir: Path = Path("evaluations")  # `voicecycle evaluate`: versions and reports
    mlflow_tracking_uri: str = "sqlite:///{workspace}/mlflow/mlflow.db"
    mlflow_artifacts: Path = Path("mlflow/artifacts")
    bentoml_home: Path = Path("bentoml")
    prefect_home: Path = Path("prefect")
    prefect_port: int = 4200
    # A running Prefect server's API (http://host:port/api): used as it is, nothing started;
    # null: the embedded server on 127.0.0.1:prefect_port (SQLite under prefect_home)
    prefect_api_url: str | None = None
    prediction_log_url: str = "sqlite:///{workspace}/predictions.db"
    # A dask.distributed scheduler (tcp://host:port) for task_runner "dask"; null: a LocalCluster
    dask_scheduler: str | None = None
    # Secrets for the URLs above: a `{NAME}` in a URL is filled from this YAML mapping (NAME:
    # value), else from the environment variable NAME; never written into the scope itself
    credentials_file: Path | None = None
    postgres_dir: Path = Path("postgres")  # the cluster `voicecycle team up` creates
    prediction_audio_dir: Path = Path("prediction_audio")  # consented production audio
    monitoring_dir: Path = Path("monitoring")  # drift state: last check, last trigger
    # Evidently UI workspace: project "voicecycle", one snapshot per drift check
    evidently_workspace: Path = Path("evidently")
    evidently_port: int = Field(8000, ge=1, le=65535)  # `evidently ui` on 127.0.0.1
    labelling_dir: Path = Path("labelling")  # labelling batches out, labelled files in
    hot_words_dir: Path = Path("hot_words")  # mined hot-word lists, per model version
    admin_token_file: Path = Path("admin_token")  # bearer token of POST /admin/reload
    run_dir: Path = Path("run")  # pid files and logs of the local servers

    def path(self, name: str) -> Path:
        """Resolve a state location against the workspace (absolute paths pass through)."""
        value = getattr(self, name)
        if not isinstance(value, Path):
            raise ValueError(f"state.{name} is not a path")
        return value if value.is_absolute() else self.workspace / value

    def url(self, name: str) -> str:
        """Resolve a URL-valued location: `{workspace}` becomes its absolute path, any other
        `{NAME}` a secret from `credentials_file` or the environment (see `secrets_for`)."""
        value = str(getattr(self, name))
        fields = {f for _, f, _, _ in string.Formatter().parse(value) if f}
        secrets = self.secrets_for(name, fields - {"workspace"})
        return value.format(workspace=self.workspace.resolve(), **secrets)

    def address(self, name: str) -> str | None:
        """`url(name)` for an optional server address; None where the scope names none."""
        return None if getattr(self, name) is None else self.url(name)

    def secrets_for(self, name: str, wanted: set[str]) -> dict[str, str]:
        """The values of the `{NAME}` placeholders of state.<name>: credentials file first,
        then the environment; a missing one is an error naming the field and both places."""
        if not wanted:
            return {}
        known: dict[str, str] = {}
        if self.credentials_file is not None:
            path = self.path("credentials_file")
            if path.is_file():
                loaded = yaml.safe_load(path.read_text()) or {}
                if not isinstance(loaded, dict):
                    raise ValueError(f"credentials file {path} must hold a mapping NAME: value")
                known = {str(k): str(v) for k, v in loaded.items()}
        missing = sorted(f for f in wanted if f not in known and f not in os.environ)
        if missing:
            where = (
                f"credentials file {self.path('credentials_file')}"
                if self.credentials_file
                else "state.credentials_file (not set)"
            )
            raise ValueError(
                f"state.{name} needs {missing}: set it in the {where} or the environment"
            )
        return {f: known[f] if f in known else os.environ[f] for f in wanted}
