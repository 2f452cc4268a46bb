"""Fixtures for the service tests: a private BentoML home holding a random-init recogniser.

BentoML resolves BENTOML_HOME on first use, so the session fixture sets it before anything
in this process touches the store (and the root conftest's clean_environ is told to keep it).
The service's settings come from BentoML template arguments (what `bentoml serve --arg` sets
in a server process); `service_arguments` sets them for a service made in this process.
The random-init model transcribes garbage; these tests are about the service's behaviour.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from data_contracts.scoping import Scope
from tests.conftest import _HARNESS_KEYS

MODEL_NAME = "voicecycle-asr"
METADATA = {
    "registry_version": "1",
    "dataset_version": "ds-test-0001",
    "model_name": MODEL_NAME,
    "metrics": {"wer_clean": 0.9, "cer_clean": 0.7},
}


@dataclass(frozen=True)
class StoredModel:
    home: Path
    tag: str
    recognizer_dir: Path


def save_random_recognizer(directory: Path, seed: int = 0) -> Path:
    """A random-init Recognizer with the default config, saved with `save()`."""
    import torch

    from models.ctc import AcousticModelConfig, CTCAcousticModel
    from models.recognizer import Recognizer

    torch.manual_seed(seed)
    Recognizer(CTCAcousticModel(AcousticModelConfig())).save(directory)
    return directory


@pytest.fixture(scope="session")
def stored_model(tmp_path_factory: pytest.TempPathFactory) -> StoredModel:
    """BENTOML_HOME in a temp dir, with the random-init recogniser imported as version 1."""
    home = tmp_path_factory.mktemp("bentoml-home")
    os.environ["BENTOML_HOME"] = str(home)
    os.environ["BENTOML_DO_NOT_TRACK"] = "True"
    _HARNESS_KEYS.update({"BENTOML_HOME", "BENTOML_DO_NOT_TRACK"})
    from bentoml._internal.configuration.containers import BentoMLContainer

    if Path(BentoMLContainer.bentoml_home.get()) != home:
        pytest.fail(
            "BentoML's home was resolved before the service tests set BENTOML_HOME; "
            "refusing to write to another model store"
        )
    from tasks.packaging import import_recognizer

    recognizer_dir = save_random_recognizer(tmp_path_factory.mktemp("recognizer"))
    tag = import_recognizer(recognizer_dir, MODEL_NAME, METADATA, {"stage": "test"})
    return StoredModel(home, tag, recognizer_dir)


def write_scope(path: Path, workspace: Path, **serving: object) -> Path:
    """A scope YAML rooted at `workspace`, with serving settings overridden."""
    scope = Scope().with_workspace(workspace)
    data = scope.model_dump(mode="json")
    data["serving"].update(serving)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@contextmanager
def service_arguments(**arguments: object) -> Iterator[None]:
    """The template arguments (scope, workspace, model_tag) a service made inside sees."""
    from bentoml._internal.configuration.containers import BentoMLContainer

    before = dict(BentoMLContainer.bento_arguments.get())
    BentoMLContainer.bento_arguments.set({k: str(v) for k, v in arguments.items()})
    try:
        yield
    finally:
        BentoMLContainer.bento_arguments.set(before)


def write_admin_token(workspace: Path, token: str) -> Path:
    """The admin token where the default scope's state.admin_token_file puts it."""
    path = Scope().with_workspace(workspace).state.path("admin_token_file")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(token + "\n")
    return path


@pytest.fixture
def service_env(stored_model: StoredModel, tmp_path: Path) -> Iterator[Path]:
    """The service's arguments for one test: a fresh workspace, no admin token."""
    workspace = tmp_path / "workspace"
    with service_arguments(workspace=workspace):
        yield workspace


def speechlike(seconds: float, rate: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """Noise shaped by a syllable-rate envelope plus a faint floor: (S, C) float32."""
    rng = np.random.default_rng(seed)
    n = max(1, int(round(seconds * rate)))
    t = np.arange(n) / rate
    envelope = 0.5 * (1 + np.sin(2 * np.pi * 4.0 * t)) * 0.2
    audio = rng.standard_normal((n, channels)) * envelope[:, None] + 1e-3 * rng.standard_normal(
        (n, channels)
    )
    return audio.astype(np.float32)


def encode(audio: np.ndarray, rate: int, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, audio, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def valid_wav() -> bytes:
    """3 s, 44.1 kHz, stereo, 16-bit: what a phone might upload."""
    return encode(speechlike(3.0, 44100, channels=2), 44100, subtype="PCM_16")
