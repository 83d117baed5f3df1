from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from picometer.clock import Clock
from tests.botapi import BotApi
from tests.servers import GatewayServer, SimServer, gateway_config

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
    started: list[GatewayServer] = []

    def make(env: dict[str, str] | None = None, clock: Clock | None = None, **sections: Any) -> GatewayServer:
        server = GatewayServer(gateway_config(sim.url, tmp_path / f"gw{len(started)}", **sections), env, clock)
        server.__enter__()
        started.append(server)
        return server

    yield make
    for server in started:
        server.__exit__(None, None, None)


@pytest.fixture
def botapi() -> Iterator[BotApi]:
    api = BotApi().start()
    yield api
    api.stop()
