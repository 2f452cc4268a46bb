"""One real `bentoml serve` on 127.0.0.1 for the fault tests of a module, with its own store
(the harness lives in bench/harness.py, which `bench faults` runs too)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.harness import Server, make_store, start_server, stop_server


@pytest.fixture(scope="module")
def fault_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("fault-server")
    running = start_server(make_store(root), root)
    try:
        yield running
    finally:
        stop_server(running)
