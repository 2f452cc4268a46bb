"""The scoping config: defaults that work, and errors that name the field at fault."""

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from data_contracts.scoping import AugmentationPolicy, Scope, ScopeError, load_scope
from tasks.scoping import scope_problems

REPO = Path(__file__).resolve().parents[2]
# what scope.yaml sets on purpose to something other than the code's default
DELIBERATE = {"split.held_out_synthesizers": ["espeak-klatt", "festival-hts", "kokoro"]}


def _leaves(value: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted path -> value for every leaf of a dumped scope (list items by index)."""
    if isinstance(value, dict) and value and prefix not in _MAPPING_FIELDS:
        return {
            k: v for key, item in value.items() for k, v in _leaves(item, f"{prefix}{key}.").items()
        }
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return {
            k: v for i, item in enumerate(value) for k, v in _leaves(item, f"{prefix}{i}.").items()
        }
    return {prefix.rstrip("."): value}


# fields whose value is a free mapping (names -> numbers), compared whole
_MAPPING_FIELDS = {
    "augmentation.noise_weights.",
    "monitoring.column_thresholds.",
    "sources.0.synthetic.era_weights.",
    "sources.0.synthetic.engine_utterances.",
}


def test_repository_scope_is_valid() -> None:
    scope = load_scope(REPO / "scope.yaml")
    assert scope.targets.wer_clean == 0.15
    assert scope.serving.host == "127.0.0.1"
    assert scope_problems(scope) == []


def test_repository_scope_matches_the_defaults() -> None:
    loaded = _leaves(load_scope(REPO / "scope.yaml").model_dump(mode="json"))
    defaults = _leaves(Scope().model_dump(mode="json"))
    assert set(loaded) == set(defaults)
    differ = {k: loaded[k] for k in loaded if loaded[k] != defaults[k]}
    assert differ == DELIBERATE


def _unknown_fields(raw: Any, model: type[BaseModel], where: str) -> list[str]:
    """Dotted names in a raw YAML mapping that the pydantic model has no field for."""
    unknown: list[str] = []
    for key, value in raw.items():
        field = model.model_fields.get(key)
        if field is None:
            unknown.append(f"{where}{key}")
            continue
        sub = field.annotation
        args = getattr(sub, "__args__", ())
        inner = next(
            (a for a in (sub, *args) if isinstance(a, type) and issubclass(a, BaseModel)), None
        )
        if inner is None:
            continue
        items = value if isinstance(value, list) else [value]
        for i, item in enumerate(items):
            if isinstance(item, dict):
                at = f"{where}{key}.{i}." if isinstance(value, list) else f"{where}{key}."
                unknown += _unknown_fields(item, inner, at)
    return unknown


def test_every_field_of_scope_yaml_exists_in_scope() -> None:
    raw = yaml.safe_load((REPO / "scope.yaml").read_text())
    assert _unknown_fields(raw, Scope, "") == []
    assert _unknown_fields({"serving": {"prot": 1}, "sources": [{"nmae": "x"}]}, Scope, "") == [
        "serving.prot",
        "sources.0.nmae",
    ]


def test_tunable_augmentation_keys_are_named_once() -> None:
    policy = AugmentationPolicy(noise_weights={"cabin": 2.0})
    tuned = policy.tunable()
    assert tuple(tuned) == AugmentationPolicy.TUNABLE_KEYS
    assert set(AugmentationPolicy.TUNABLE_KEYS) <= set(AugmentationPolicy.model_fields)
    assert tuned["noise_weights"] == {t: (2.0 if t == "cabin" else 1.0) for t in policy.noise_types}


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
