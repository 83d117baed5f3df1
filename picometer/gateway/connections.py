"""Client connections, bounded: uvicorn's h11 protocol with a deadline for each request head and a cap on
open connections, so idle sockets and slowloris clients cannot use up a Pi's file descriptors or memory."""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

from uvicorn.protocols.http.h11_impl import H11Protocol

from picometer.gateway import held_head

_BUSY_BODY = json.dumps(
    {"error": {"type": "overloaded", "code": "overloaded", "message": "too many open connections; try again"}}
).encode()
_BUSY = held_head.raw_answer(
    503,
    [
        (b"content-type", b"application/json"),
        (b"retry-after", b"1"),
        (b"content-length", str(len(_BUSY_BODY)).encode()),
    ],
    _BUSY_BODY,
)


def bounded_protocol(max_connections: int, header_timeout_s: float) -> type[H11Protocol]:
    """A protocol class for uvicorn.Config(http=...).

    - A connection that has not sent a whole request head within `header_timeout_s` of opening (or of its
      last answer) is closed: trickling bytes does not keep it open, as it would uvicorn's keep-alive timer.
    - Past `max_connections`, a new connection takes the place of one that is idle (between requests, or
      still sending its head); when every connection is busy with a request, the new one gets 503.
    - Each request gets a hold on its response head (gateway.held_head) in scope["extensions"].
    """

    class Bounded(H11Protocol):
        _head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            live = [c for c in self.connections if not c.transport.is_closing()]  # closed ones leave a tick later
            if len(live) > max_connections:
                idle = next((c for c in live if c is not self and _idle(c)), None)
                if idle is None:
                    transport.write(_BUSY)
                    transport.close()
                    return
                idle.transport.close()
            self._arm()

        def _arm(self) -> None:
            self._disarm()
            self._head_timer = self.loop.call_later(header_timeout_s, self._head_late)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_late(self) -> None:
            self._head_timer = None
            if _idle(self) and not self.transport.is_closing():
                self.transport.close()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            cycle = self.cycle
            if cycle is not None and not cycle.response_complete:  # a request's hold, made as its head comes in
                extensions: dict[str, Any] = cast(dict[str, Any], cycle.scope).setdefault("extensions", {})
                if held_head.KEY not in extensions:
                    extensions[held_head.KEY] = held_head.HeadHold(cycle)
            if not _idle(self):
                self._disarm()  # a whole request head is in: the request's own timeouts apply from here

        def on_response_complete(self) -> None:
            self._let_go()
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            self._let_go()
            super().connection_lost(exc)

        def _let_go(self) -> None:
            """The hold refers to its cycle: both go with the request, freed at once rather than by the GC."""
            if self.cycle is not None:
                self.cycle.scope.get("extensions", {}).pop(held_head.KEY, None)

    return Bounded


def _idle(protocol: object) -> bool:
    """No request in progress: between requests, or its head not complete yet."""
    cycle = getattr(protocol, "cycle", None)
    return cycle is None or bool(cycle.response_complete)
