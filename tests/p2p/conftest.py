"""Fixtures of the data-plane tests: real servers and clients on loopback under uvloop (the
daemons' loop; a module sets ``EVENT_LOOPS`` to also run on the stock asyncio loop) and a
seeded RNG. Helpers live in ``p2p_helpers``."""

from __future__ import annotations

import asyncio
import os
import random

import pytest
import uvloop

from p2p_helpers import SECRET

from services.p2p import ClientLimits, PeerClient, PeerServer, ServerLimits

LOOP_FACTORIES = {"uvloop": uvloop.new_event_loop, "asyncio": asyncio.new_event_loop}


def pytest_asyncio_loop_factories(config, item):
    return {name: LOOP_FACTORIES[name] for name in getattr(item.module, "EVENT_LOOPS", ("uvloop",))}


@pytest.fixture
def rng() -> random.Random:
    seed = int(os.environ.get("P2P_TEST_SEED", "20240611"))
    print(f"p2p test seed {seed} (replay with P2P_TEST_SEED={seed})")
    return random.Random(seed)


@pytest.fixture
async def servers():
    """``await servers({Type: handler}, secret=..., limits=..., port=...)`` -> started PeerServer."""
    started: list[PeerServer] = []

    async def start(routes: dict, secret=SECRET, limits: ServerLimits | None = None, host: str = "127.0.0.1",
                    port: int = 0):
        server = PeerServer(secret, limits=limits, name="test-server")
        for request_type, handler in routes.items():
            server.route(request_type, handler)
        await server.start(host, port)
        started.append(server)
        return server

    yield start
    for server in started:
        await server.stop()


@pytest.fixture
async def clients():
    made: list[PeerClient] = []

    def make(secret=SECRET, limits: ClientLimits | None = None) -> PeerClient:
        client = PeerClient(secret, limits=limits, name="test-client")
        made.append(client)
        return client

    yield make
    for client in made:
        await client.close()
