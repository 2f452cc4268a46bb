"""BentoML packaging: the champion recogniser into the model store, the service into a Bento.

Plain functions (no prefect import): the packaging flow wraps them in tasks. BentoML writes
to the store under `BENTOML_HOME`; the caller sets it (from `state.bentoml_home`).
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

SERVICE_IMPORT = "deployments.service:VoiceSearchASR"
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

    Idempotent on `metadata["registry_version"]`: if a model of this name already carries
    that registry version, its tag is returned and nothing is written. Note that `latest`
    then keeps pointing at the newest import, not at the returned model.
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
        for existing in existing_models:
            if str(existing.info.metadata.get("registry_version")) == str(version):
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

    Runs `bentoml build` in a child process, so the service module is imported fresh with
    VOICECYCLE_MODEL_TAG=model_tag (the model the Bento declares and therefore packs).
    Offline: packages are not locked. A BENTOML_HOME inside `service_dir` (the default scope
    keeps it in workspace/bentoml) is excluded from the build context, so the store is never
    copied into the Bento it is building.
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
    config["envs"] = [
        env for env in config.get("envs", []) if env.get("name") != "VOICECYCLE_MODEL_TAG"
    ] + [{"name": "VOICECYCLE_MODEL_TAG", "value": exact_tag}]
    env = {
        **os.environ,
        "BENTOML_HOME": str(home),
        "VOICECYCLE_MODEL_TAG": exact_tag,
        "BENTOML_DO_NOT_TRACK": "True",
    }
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


def serve_command(host: str, port: int) -> list[str]:
    """The `bentoml serve` command line for the service (run it from the repository root)."""
    return [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        SERVICE_IMPORT,
        "--host",
        host,
        "--port",
        str(port),
    ]
