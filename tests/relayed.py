"""A provider's answer arriving in the pieces a test chooses, for driving a Relay in process."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx


class Pieces(httpx.AsyncByteStream):
    def __init__(self, parts: list[bytes]) -> None:
        self.parts = parts

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for part in self.parts:
            yield part


def answer(ctype: str, parts: list[bytes]) -> httpx.Response:
    """A 200 answer of this content type whose body comes in `parts`."""
    return httpx.Response(200, headers=[("content-type", ctype)], stream=Pieces(parts))
