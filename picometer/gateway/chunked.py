"""A stream's chunks written straight to the client's connection in HTTP/1.1 chunked framing, past the server's
h11 machinery. h11 checks and frames every chunk anew, a few µs each on every chunk of every stream, and its
chunked writer keeps no count a raw frame could upset: the head and the end still go through the server, so its
view of the response stays whole. Whatever is not plain chunked framing on a live, writable connection (an
HTTP/1.0 client, a HEAD request, a client not reading, one gone, a server without these parts) is sent the ASGI
way, which waits or refuses as the server decides."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from picometer.gateway.held_head import HeadHold

Put = Callable[[bytes], bool]  # True: written; False: the caller sends it through the server


def _through_server(data: bytes) -> bool:
    return False


NOT_DIRECT: Put = _through_server


def writer(hold: HeadHold | None) -> Put:
    """Once the response head went out (h11 has chosen the framing): a writer of body chunks past h11, or
    NOT_DIRECT when the response is not chunked or the server is not the one this was written for."""
    if hold is None:
        return NOT_DIRECT
    cycle = hold.cycle
    try:
        from h11._writers import ChunkedWriter  # private: an h11 without it gets the server's own path

        chunked = type(cycle.conn._writer) is ChunkedWriter and cycle.scope["method"] != "HEAD"
        flow, _ = cycle.flow, cycle.disconnected
    except (AttributeError, ImportError, KeyError):
        return NOT_DIRECT
    return _Direct(cycle, flow).put if chunked else NOT_DIRECT


class _Direct:
    __slots__ = ("_cycle", "_flow")

    def __init__(self, cycle: Any, flow: Any) -> None:
        self._cycle, self._flow = cycle, flow

    def put(self, data: bytes) -> bool:
        c = self._cycle
        # An empty frame would end the body; a paused, gone or finished response is the server's to handle.
        if not data or self._flow.write_paused or c.disconnected or c.response_complete:
            return False
        c.transport.write(b"%x\r\n%b\r\n" % (len(data), data))
        return True
