"""The scoping config: defaults that work, and errors that name the field at fault."""

from pathlib import Path

import pytest

from data_contracts.scoping import Scope, ScopeError, load_scope
from tasks.scoping import scope_problems

REPO = Path(__file__).resolve().parents[2]


def test_repository_scope_is_valid_and_matches_defaults() -> None:
    scope = load_scope(REPO / "scope.yaml")
    assert scope.targets.wer_clean == 0.15
    assert scope.serving.host == "127.0.0.1"
    assert scope_problems(scope) == []


@pytest.mark.parametrize(
    ("yaml_text", "field"),
    [
        ("targets: {wer_clean: 2}", "targets.wer_clean"),
        ("audio: {min_duration_s: 5, max_duration_s: 1}", "audio"),
        ("augmentation: {snr_db_min: 30, snr_db_max: 0}", "augmentation"),
        ("serving: {port: 0}", "serving.port"),
        ("sources: [{kind: csv, name: x}]", "sources.0"),
        ("sources: [{kind: tape, name: x}]", "sources.0.kind"),
        ("trainig: {max_minutes: 3}", "trainig"),
        ("augmentation: {noise_weights: {jet: 1}}", "augmentation"),
    ],
)
def test_invalid_scope_names_the_field(tmp_path: Path, yaml_text: str, field: str) -> None:
    path = tmp_path / "scope.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ScopeError) as err:
        load_scope(path)
    assert field in str(err.value)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("text", ["{{{", "- just\n- a list"])
def test_malformed_yaml_is_a_clear_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "scope.yaml"
    path.write_text(text)
    with pytest.raises(ScopeError, match="scope file"):
        load_scope(path)


def test_missing_files_are_problems(tmp_path: Path) -> None:
    scope = Scope.model_validate(
        {"sources": [{"kind": "csv", "name": "mine", "path": str(tmp_path / "nope.csv")}]}
    )
    problems = scope_problems(scope)
    assert len(problems) == 1 and "sources[0].path" in problems[0]


def test_state_paths_resolve_under_the_workspace(tmp_path: Path) -> None:
    scope = Scope().with_workspace(tmp_path)
    assert scope.state.path("datasets_dir") == tmp_path / "datasets"
    assert (
        scope.state.url("mlflow_tracking_uri") == f"sqlite:///{tmp_path.resolve()}/mlflow/mlflow.db"
    )
