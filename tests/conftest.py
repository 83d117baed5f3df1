from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests.botapi import BotApi
from tests.servers import Gateways, GatewayServer, SimServer, gateway_config

# No per-example deadline: a loaded CI machine must not turn a slow example into a failure.
settings.register_profile("picometer", deadline=None)
settings.load_profile("picometer")


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with SimServer() as server:
        yield server


@pytest.fixture
def gateway(sim: SimServer, tmp_path: Path) -> Iterator[GatewayServer]:
    with GatewayServer(gateway_config(sim.url, tmp_path)) as server:
        yield server


@pytest.fixture
def make_gateway(sim: SimServer, tmp_path: Path) -> Iterator[Callable[..., GatewayServer]]:
    """A gateway with extra config sections, e.g. make_gateway(workflows={...})."""
    with Gateways(sim.url, tmp_path) as make:
        yield make


@pytest.fixture
def botapi() -> Iterator[BotApi]:
    api = BotApi().start()
    yield api
    api.stop()
