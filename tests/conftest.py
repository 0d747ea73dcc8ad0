"""Shared test fixtures (real nats-server processes) and the vector/KZG path helpers."""

from __future__ import annotations

import pytest

from shared_paths import (  # noqa: F401  (re-exported for fixtures)
    KZG_DIR,
    MAINNET_KZG_PARAMS,
    REPO_ROOT,
    SHARED_DIR,
    VECTORS_DIR,
    require_mainnet_kzg,
    require_vectors,
)


# --- NATS (services.bus) -------------------------------------------------------------------------


@pytest.fixture
def nats_server_factory():
    """Start real ``nats-server`` processes on free 127.0.0.1 ports; all stopped at teardown.

    ``nats_server_factory(**NatsServerConfig fields)`` -> started ``NatsServer``."""
    from services.bus.server import NatsServer, NatsServerConfig

    started = []

    def start(**config_fields):
        server = NatsServer(NatsServerConfig(**config_fields)).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def nats_server(nats_server_factory):
    """A single-node nats-server with JetStream and max_payload 3 MiB (the cluster defaults)."""
    return nats_server_factory()
