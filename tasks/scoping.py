"""Scope checks every flow runs first: the typed config is valid, and what it names exists."""

from __future__ import annotations

from pathlib import Path

import yaml
from prefect import task

from data_contracts.scoping import Scope, ScopeError
from tasks.flow_runs import record_flow_run_process


def scope_problems(scope: Scope) -> list[str]:
    """Problems pydantic cannot see: files the scope names that are not there."""
    problems = []
    for i, source in enumerate(scope.sources):
        if source.path is not None and not source.path.is_file():
            problems.append(f"sources[{i}].path: manifest {source.path} does not exist")
        if source.data_root is not None and not source.data_root.is_dir():
            problems.append(f"sources[{i}].data_root: folder {source.data_root} does not exist")
        texts = source.synthetic.texts_file if source.synthetic is not None else None
        if texts is not None and not texts.is_file():
            problems.append(f"sources[{i}].synthetic.texts_file: file {texts} does not exist")
    noise_dir = scope.augmentation.noise_dir
    if noise_dir is not None and not noise_dir.is_dir():
        problems.append(f"augmentation.noise_dir: folder {noise_dir} does not exist")
    hot = scope.training.hot_words_file
    if hot is not None and not hot.is_file():
        problems.append(f"training.hot_words_file: file {hot} does not exist")
    return problems


@task(name="validate-scope")
def validate_scope(scope: Scope) -> Scope:
    """Fail before any work when the scope names missing files; log what it asks for."""
    record_flow_run_process()  # every flow starts here: a later sweep can tell it died
    problems = scope_problems(scope)
    if problems:
        raise ScopeError("invalid scope:\n" + "\n".join(f"  - {p}" for p in problems))
    return scope


def scope_markdown(scope: Scope) -> str:
    """The scope as a readable markdown block for the Prefect UI."""
    body = yaml.safe_dump(scope.model_dump(mode="json"), sort_keys=False)
    return f"# Scope: {scope.project.name}\n\n{scope.project.task}\n\n```yaml\n{body}```"


def default_scope_path() -> Path:
    """The repository's scope.yaml (the working directory's, else the package checkout's)."""
    here = Path("scope.yaml")
    return here if here.is_file() else Path(__file__).resolve().parents[1] / "scope.yaml"
