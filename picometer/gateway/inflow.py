"""What a provider sends, read within bounds: the body decompressed here, a piece at a time, never more
than `max_response_bytes` in all, so one answer cannot take a Pi's memory (a gzip bomb included)."""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterable, AsyncIterator

import httpx

from picometer.frozen import frozen

PIECE_BYTES = 65_536  # the most one decompression step may produce


class AnswersHeld:
    """Bytes of whole answers held in memory at once, across calls. Past `limit`, an answer is passed on as it
    arrives (metering.answer), so many big answers at once cannot exhaust a Pi's memory."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.bytes = 0

    def take(self, n: int, mine: int) -> bool:
        """Hold `n` more bytes for a caller already holding `mine`; an answer held alone may pass the limit
        (up to its provider's max_response_bytes), so a lone big answer still gets its cost header or its 502."""
        if self.bytes + n > self.limit and self.bytes > mine:
            return False
        self.bytes += n
        return True

    def give(self, n: int) -> None:
        self.bytes -= n


class TooLarge(Exception):
    """The provider sent more than the bound allows."""


class Undecodable(Exception):
    """A content encoding picometer never asked for and cannot read, or a corrupt compressed body."""


def _decoder(encoding: str) -> zlib._Decompress | None:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return zlib.decompressobj(32 + zlib.MAX_WBITS)  # zlib-wrapped, as the RFC says (raw deflate is rare)
    raise Undecodable(f"content-encoding {encoding!r}")


@frozen
class Framing:
    """What an answer's head says of its body."""

    content_type: str = ""
    encoding: str = ""  # its content-encoding, as sent
    length: int | None = None  # its declared content-length


_FRAMING = {b"content-type": 0, b"content-encoding": 1, b"content-length": 2}


def framing(headers: httpx.Headers) -> Framing:
    """Read from the raw header pairs in one pass: httpx decodes every header on the first lookup and scans them
    all on each, and a provider sends twenty or more (rate limits, ids, its CDN's). Repeated ones joined, as
    httpx joins them."""
    found: tuple[list[bytes], list[bytes], list[bytes]] = ([], [], [])
    for name, value in headers.raw:
        at = _FRAMING.get(name.lower())
        if at is not None:
            found[at].append(value)
    ctype, encoding, length = (b", ".join(values).decode("latin-1") for values in found)
    return Framing(ctype, encoding, int(length) if length.isascii() and length.isdigit() else None)


def undecoded(response: httpx.Response, head: Framing) -> bool:
    """The body is still to be read and comes as sent (no content encoding): its raw chunks are its pieces."""
    return not response.is_stream_consumed and head.encoding.strip().lower() in ("", "identity")


def raw_chunks(response: httpx.Response) -> AsyncIterable[bytes]:
    """An undecoded body's chunks as the transport hands them over: aiter_raw without its generator and chunker
    per chunk (the hot loop of a stream). Read once; the caller closes the response."""
    response.is_stream_consumed = True
    stream = response.stream
    assert isinstance(stream, httpx.AsyncByteStream)
    return stream


async def counted(chunks: AsyncIterator[bytes], limit: int | None, seen: int = 0) -> AsyncIterator[bytes]:
    """An undecoded body's (rest of its) chunks, `seen` bytes of it read already: TooLarge once it passes `limit`
    (None: no limit). Empty chunks are dropped."""
    async for chunk in chunks:
        seen += len(chunk)
        if limit is not None and seen > limit:
            raise TooLarge(f"more than {limit} bytes")
        if chunk:
            yield chunk


AFTER_TERMINAL = 65_536  # read past a stream's terminal event so its connection serves again; beyond, it is closed


async def dropped(chunks: AsyncIterator[bytes]) -> None:
    """What a provider sends after its answer is whole (a stream's terminal event, a small answer's declared length),
    read and dropped: a connection read to the end of its body goes back to the pool. One that sends more, or
    breaks, is closed by the caller instead."""
    seen = 0
    try:
        async for chunk in chunks:
            seen += len(chunk)
            if seen > AFTER_TERMINAL:
                return
    except (httpx.HTTPError, TooLarge, Undecodable):
        return


async def pieces(response: httpx.Response, limit: int | None) -> AsyncIterator[bytes]:
    """The decoded body as it arrives; TooLarge once it passes `limit` bytes (None: no limit)."""
    if response.is_stream_consumed:  # read already (a small error body, see small_body): what it holds
        if limit is not None and len(response.content) > limit:
            raise TooLarge(f"more than {limit} bytes")
        if response.content:
            yield response.content
        return
    decoder = _decoder(response.headers.get("content-encoding", ""))
    total = 0
    if decoder is None:  # as sent: the transport's chunks, counted
        async for raw in counted(aiter(raw_chunks(response)), limit):
            yield raw
        return
    async for raw in response.aiter_raw():
        out, data = [], raw
        try:
            while data:
                out.append(decoder.decompress(data, PIECE_BYTES))
                data = decoder.unconsumed_tail
                if limit is not None and total + sum(map(len, out)) > limit:
                    break
        except zlib.error as e:
            raise Undecodable(f"a corrupt compressed body ({e})") from None
        for piece in out:
            total += len(piece)
            if limit is not None and total > limit:
                raise TooLarge(f"more than {limit} bytes")
            if piece:
                yield piece


ERROR_BODY_BYTES = 65_536  # an error answer is read for its reason; more than this is cut off


async def small_body(response: httpx.Response) -> httpx.Response:
    """The same answer with its body read (at most ERROR_BODY_BYTES, decoded): for error answers, whose
    body tells a quota from a rate limit and goes to the client as it is."""
    body = bytearray()
    try:
        async for piece in pieces(response, None):
            body += piece[: ERROR_BODY_BYTES - len(body)]
            if len(body) >= ERROR_BODY_BYTES:
                break
    except Undecodable:
        pass
    finally:
        await response.aclose()
    drop = {b"content-encoding", b"content-length", b"transfer-encoding"}
    headers = [(k, v) for k, v in response.headers.raw if k.lower() not in drop]
    return httpx.Response(
        response.status_code,
        headers=headers,
        content=bytes(body),
        extensions=response.extensions,
    )
