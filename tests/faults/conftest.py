"""One real `bentoml serve` on 127.0.0.1 for the fault tests of a module, with its own store."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults.servers import Server, make_store, start_server, stop_server

ADMIN_TOKEN = "real-server-token"  # what tests.service.test_real_server.start_server writes


@pytest.fixture(scope="module")
def fault_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("fault-server")
    running = start_server(make_store(root), root)
    try:
        yield running
    finally:
        stop_server(running)
