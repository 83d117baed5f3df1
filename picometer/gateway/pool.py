"""The one connection pool to the providers. Its connections do a call's deferred work (its prompt fingerprint, its
record's draft) the moment the request has gone out, while the provider works on it: time the call spends waiting
anyway. They also hold every read before the answer starts to the attempt's first-byte deadline."""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from typing import Any

import httpcore
import httpx

# The current call's work for when its request is out; taken (and cleared) by the first read of its answer.
WHILE_WAITING: ContextVar[Callable[[], object] | None] = ContextVar("picometer_while_waiting", default=None)
# When (time.monotonic) the current attempt's answer must have started: every read before then waits at most
# until it, so a provider sending bytes that are no answer (1xx, a header at a time) cannot stretch the wait.
ANSWER_BY: ContextVar[float | None] = ContextVar("picometer_answer_by", default=None)

# TCP_NODELAY: headers and body go out in two writes; without it Nagle and delayed ACK cost ~40 ms a call.
_SOCKET_OPTIONS = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]


def new_transport(max_connections: int = 256) -> httpx.AsyncHTTPTransport:
    """One connection pool for all providers: keep-alive saves a TLS handshake per call on a Pi.

    A bare transport, not an AsyncClient: a client keeps a cookie jar, and cookies one caller's
    response set must never ride along on another caller's request. No redirects, no env proxies either.
    """
    return _Transport(httpx.Limits(max_connections=max_connections, max_keepalive_connections=32, keepalive_expiry=60))


class _Transport(httpx.AsyncHTTPTransport):
    def __init__(self, limits: httpx.Limits) -> None:
        context = httpx.create_ssl_context()
        super().__init__(verify=context, limits=limits, socket_options=_SOCKET_OPTIONS)
        # httpx takes no network backend: the same pool again, with connections that do the waiting work.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            socket_options=_SOCKET_OPTIONS,
            network_backend=_Backend(),
        )


class _Backend(httpcore.AsyncNetworkBackend):
    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.connect_tcp(host, port, timeout, local_address, socket_options))

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.connect_unix_socket(path, timeout, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _Stream(httpcore.AsyncNetworkStream):
    """A connection to a provider: before it waits for an answer, the calling task's waiting work is done."""

    __slots__ = ("_inner",)

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        work = WHILE_WAITING.get()
        if work is not None:
            WHILE_WAITING.set(None)
            with contextlib.suppress(Exception):  # not done here, it is done (or fails, recorded) with the record
                work()
        by = ANSWER_BY.get()
        if by is not None:
            left = max(by - time.monotonic(), 0.0)
            timeout = left if timeout is None else min(timeout, left)
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)
