"""Shared fixtures: a clean environment, a tiny real scope, a Prefect test server."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from data_contracts.scoping import DataSource, RuntimeScope, Scope, SyntheticCorpus, TrainingBudget

_OURS = ("PREFECT_", "MLFLOW_", "BENTOML_")


def pytest_configure(config: pytest.Config) -> None:
    """One OpenMP thread in each test process and in what it starts (servers, CLI commands,
    workers), unless the caller sets OMP_NUM_THREADS. `make test` runs five pytest processes
    on two cores: an operator whose second thread waits for a busy core spins and stalls
    (measured: a torch-heavy part of the suite beside two busy processes, 143 s with
    two threads, 106 s with one). Code that sets its own thread count from the scope (the
    training step, the service, inference) still does."""
    del config
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch = sys.modules.get("torch")  # imported by a plugin before the variable was read
    if torch is not None and os.environ["OMP_NUM_THREADS"] == "1":
        torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """A test never talks to a user's own Prefect, MLflow or BentoML (httpx's clean_environ)."""
    for key in list(os.environ):
        if key.startswith(_OURS) and key not in _HARNESS_KEYS:
            monkeypatch.delenv(key)


_HARNESS_KEYS: set[str] = set()


def tiny_scope(workspace: Path, n_utterances: int = 24, n_voices: int = 6) -> Scope:
    """The default scope shrunk to a few clips, with all state under `workspace`.

    Its fan-out runs on threads: a process pool's start-up (each worker imports torch and
    Prefect) outweighs a few clips of work. The process runner has tests of its own
    (tests/flows/test_data_flows.py, tests/flows/test_train_flow.py).
    """
    source = DataSource(
        kind="synthetic",
        name="synthetic",
        synthetic=SyntheticCorpus(n_utterances=n_utterances, seed=5, n_voices=n_voices),
    )
    runtime = RuntimeScope(task_runner="threads")
    # a small open vocabulary: the real background, without a 30,000-word trie per decoder;
    # one torch thread: the suite runs two pytest processes on two cores, and torch's threads
    # waiting for a busy core slow a step tenfold
    training = TrainingBudget(general_lexicon_words=2000, threads=1)
    return Scope(sources=[source], runtime=runtime, training=training).with_workspace(workspace)


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One temporary Prefect server for every flow test of the session."""
    home = tmp_path_factory.mktemp("prefect-home")
    for key in [k for k in os.environ if k.startswith(_OURS)]:
        del os.environ[key]
    os.environ["PREFECT_HOME"] = str(home)
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    _HARNESS_KEYS.update({"PREFECT_HOME", "PREFECT_SERVER_ANALYTICS_ENABLED"})
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield
