"""A stream's response head, written by the server while the provider's first event is still on its way and held
back until that event is whole. The server's work on a head (h11 checks it and renders it) then falls in time
the call spends waiting anyway, and a first event that is no event still gets its 502.

The daemon's own protocol (gateway.connections) puts a HeadHold in each request's scope["extensions"]. While it
holds, what the server writes for the response goes to a stand-in for the connection's transport; release()
sends it in one write. The server takes a held head as sent: an answer that replaces it (a 502 for a first
event that is none, a 504 at total_timeout_s, a 500) is written raw, and the connection is closed after it. A
server shutting down while a head is held closes the connection without an answer."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from picometer.asgi import Message, Scope, Send

KEY = "picometer.head_hold"
_PHRASES = {s.value: s.phrase.encode() for s in HTTPStatus}  # a code it lacks goes with no phrase, as HTTP allows


def of(scope: Scope) -> HeadHold | None:
    """The request's HeadHold; None under a server without one (tests on plain uvicorn, the simulator)."""
    extensions = scope.get("extensions")
    return extensions.get(KEY) if extensions else None


class _Kept:
    """Stands in for the connection's transport while a head is held: keeps what the server writes, or, once the
    head is replaced, drops it."""

    __slots__ = ("parts", "real")

    def __init__(self, real: Any) -> None:
        self.real = real
        self.parts: list[bytes] | None = []

    def write(self, data: bytes) -> None:
        if self.parts is not None:
            self.parts.append(data)

    def is_closing(self) -> bool:
        return bool(self.real.is_closing())

    def close(self) -> None:
        self.real.close()


class HeadHold:
    """One request's hold on its response head, over uvicorn's request cycle (its `transport` and `send`)."""

    __slots__ = ("_body", "_cycle", "_kept", "_start")

    def __init__(self, cycle: Any) -> None:
        self._cycle = cycle
        self._kept: _Kept | None = None
        self._start: Message | None = None
        self._body: list[bytes] = []

    @property
    def cycle(self) -> Any:
        """The server's request cycle this hold is over (gateway.chunked writes a stream's chunks to it)."""
        return self._cycle

    @property
    def holding(self) -> bool:
        """A head is held: the client has nothing of this response yet."""
        return self._kept is not None and self._kept.parts is not None

    def hold(self) -> None:
        """What the server writes for this response from now on is kept back."""
        if self._kept is None:
            self._kept = _Kept(self._cycle.transport)
            self._cycle.transport = self._kept

    def release(self) -> None:
        """What was kept back goes out in one write; the server writes straight through again."""
        kept, self._kept = self._kept, None
        if kept is None:
            return
        self._cycle.transport = kept.real
        if kept.parts and not kept.real.is_closing():
            kept.real.write(b"".join(kept.parts))

    async def instead(self, message: Message) -> None:
        """An ASGI send for the answer that replaces a held head (gateway.admin.respond's start and body):
        written raw with `connection: close`, then the server's own response ended into nothing."""
        kept = self._kept
        assert kept is not None and kept.parts is not None, "nothing held to replace"
        if message["type"] == "http.response.start":
            self._start = message
            return
        self._body.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        assert self._start is not None
        answer = raw_answer(self._start["status"], self._start.get("headers", []), b"".join(self._body))
        kept.parts = None  # the held head, and whatever the server writes for it from here on, go nowhere
        if not kept.real.is_closing():
            kept.real.write(answer)
            kept.real.close()
        if self._cycle.response_started and not self._cycle.response_complete:  # the head may never have reached it
            await self._cycle.send({"type": "http.response.body", "body": b"", "more_body": False})


def raw_answer(status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
    """A whole HTTP/1.1 answer written past the server, on a connection closed after it; `headers` give its
    length."""
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, _PHRASES.get(status, b""))]
    lines += [name + b": " + value + b"\r\n" for name, value in headers]
    lines.append(b"connection: close\r\n\r\n")
    return b"".join(lines) + body


def answering(scope: Scope, send: Send) -> Send:
    """Where an error answer goes once the reply may have begun: in place of a held head, else to `send`."""
    hold = of(scope)
    return hold.instead if hold is not None and hold.holding else send
