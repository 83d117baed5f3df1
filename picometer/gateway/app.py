"""The HTTP edge, routing only: /-/ and /metrics to the admin table, the rest to the proxy (at most
[server].max_in_flight at once), and the ASGI lifespan."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Collection
from typing import Any

import httpx

from picometer import __version__
from picometer.alert import Alert
from picometer.asgi import Receive, Scope, Send
from picometer.clock import Clock
from picometer.config import Config
from picometer.gateway.admin import Admin, Headed
from picometer.gateway.admission import Admission
from picometer.gateway.proxy import Proxy
from picometer.gateway.upstream import Upstream
from picometer.metering.budget import Budget
from picometer.metering.pricing import Pricer
from picometer.record import Recorder, rfc3339_ms
from picometer.store.state import State


class Gateway:
    """The ASGI application: one instance per daemon."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Clock,
        pricer: Pricer,
        recorder: Recorder,
        budget: Budget,
        state: State,
        transport: httpx.AsyncBaseTransport | None = None,
        status_extra: Callable[[], Awaitable[dict[str, Any]]] | None = None,
        alert: Callable[[Alert], None] | None = None,
        rand: Callable[[], float] = random.random,
        canary_token: str | None = None,
        run_canary: Callable[[], Awaitable[dict[str, Any]]] | None = None,
        metrics: Callable[[], Awaitable[tuple[bytes, str]]] | None = None,
        known_workflows: Callable[[], Collection[str]] | None = None,
        page: Callable[[Scope, Receive], Awaitable[Headed]] | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.pricer = pricer
        self.recorder = recorder
        self.budget = budget
        self.admission = Admission(
            config, clock=clock, pricer=pricer, budget=budget, state=state, alert=alert, canary_token=canary_token
        )
        self.upstream = Upstream(config.retry, clock, transport, rand)
        self.admin = Admin(
            config, clock, state, lambda: self.ready, self._full_status, run_canary, metrics, known_workflows, page
        )
        self.proxy = Proxy(
            config,
            clock=clock,
            pricer=pricer,
            recorder=recorder,
            budget=budget,
            admission=self.admission,
            upstream=self.upstream,
        )
        self.stats = self.proxy.stats
        self._status_extra = status_extra
        self.started_at = clock.now()
        self.ready = False
        self.in_flight = 0

    def reconfigure(self, config: Config) -> None:
        """A reloaded config: calls that start from now on use it; calls in flight finish under the old one."""
        self.config = config
        self.admission.reconfigure(config)
        self.upstream.reconfigure(config.retry)
        self.admin.config = config
        self.proxy.reconfigure(config)

    def retries(self) -> dict[str, dict[str, int]]:
        return self.upstream.retries()

    async def aclose(self) -> None:
        await self.upstream.aclose()
        self.proxy.cache.close()

    # ------------------------------------------------------------ ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            path: str = scope["path"]
            if path.startswith("/-/") or path == "/metrics":
                await self.admin(scope, receive, send)
            elif self.in_flight >= self.config.server.max_in_flight:
                await self.proxy.overloaded(scope, send)
            else:
                self.in_flight += 1
                try:
                    await self.proxy(scope, receive, send)
                finally:
                    self.in_flight -= 1

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.ready = True
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.ready = False
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def status(self) -> dict[str, Any]:
        """The gateway's own part of /-/status."""
        return {
            "version": __version__,
            "started_at": rfc3339_ms(self.started_at),
            "uptime_s": round((self.clock.now() - self.started_at).total_seconds(), 1),
            "listen": self.config.server.listen,
            "providers": {name: {"kind": p.kind, "base_url": p.base_url} for name, p in self.config.providers.items()},
            "requests": self.stats.requests,
            "requests_by_status": dict(self.stats.by_status),
            "in_flight": self.in_flight,
            "cost_usd_since_start": round(self.stats.cost_usd, 6),
            "upstream": self.upstream.status(),
        }

    async def _full_status(self) -> dict[str, Any]:
        return {**self.status(), **(await self._status_extra() if self._status_extra else {})}
