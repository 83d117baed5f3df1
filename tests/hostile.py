"""A provider that answers garbage on purpose, over a raw loopback socket: the `x-hostile` request header picks
the answer. Every answer is bounded (it stops at MAX_BYTES or when the reader hangs up)."""

from __future__ import annotations

import asyncio
import json
import threading
import zlib
from functools import cache

MAX_BYTES = 300_000_000
PIECE = b"a" * 65_536
BIG_ANSWER = 8_000_000
LATE_S = 0.4  # sse_late_first: from the head to the first event
SSE_EVENTS = [
    b'data: {"id": "x", "model": "gpt-4o-mini", "choices": [{"index": 0, "delta": {"content": "hi"}}]}\n\n',
    b'data: {"id": "x", "model": "gpt-4o-mini", "choices": [], '
    b'"usage": {"prompt_tokens": 9, "completion_tokens": 2}}\n\n',
    b"data: [DONE]\n\n",
]


@cache
def gzip_bomb() -> bytes:
    """About 1 GB of JSON once inflated, about 1 MB on the wire."""
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b"a" * 1_048_576
    parts = [z.compress(b'{"pad": "')] + [z.compress(block) for _ in range(1024)] + [z.compress(b'"}'), z.flush()]
    return b"".join(parts)


def _head(ctype: str, extra: str = "") -> bytes:
    return f"HTTP/1.1 200 OK\r\ncontent-type: {ctype}\r\ntransfer-encoding: chunked\r\n{extra}\r\n".encode()


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


class HostileServer:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self.loop.run_forever()
        server.close()

    def __enter__(self) -> HostileServer:
        self.thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            headers = dict(
                line.split(": ", 1) for line in head.decode("latin-1").lower().split("\r\n")[1:] if ": " in line
            )
            await reader.readexactly(int(headers.get("content-length", "0")))
            await self._answer(headers.get("x-hostile", ""), writer, reader)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _answer(self, kind: str, w: asyncio.StreamWriter, r: asyncio.StreamReader) -> None:
        async def endless(head: bytes, first: bytes, piece: bytes) -> None:
            w.write(head + _chunk(first))
            sent = 0
            while sent < MAX_BYTES:
                w.write(_chunk(piece))
                await w.drain()
                sent += len(piece)

        if kind == "huge_json":
            await endless(_head("application/json"), b'{"pad": "', PIECE)
        elif kind == "sse_no_blank":
            line = b'data: {"choices": [{"delta": {"content": "x"}}]}\n'
            await endless(_head("text/event-stream"), line, line * 1000)
        elif kind == "sse_no_newline":
            await endless(_head("text/event-stream"), b"data: ", PIECE)
        elif kind in ("sse_late_first", "sse_stalled"):  # the head at once; the first event late, or never
            w.write(_head("text/event-stream"))
            await w.drain()
            if kind == "sse_stalled":
                await asyncio.wait_for(r.read(), 30)  # until picometer hangs up
                return
            await asyncio.sleep(LATE_S)
            for event in SSE_EVENTS:
                w.write(_chunk(event))
            w.write(b"0\r\n\r\n")
            await w.drain()
        elif kind == "gzip_bomb":
            body = gzip_bomb()
            w.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\n"
                + f"content-length: {len(body)}\r\n\r\n".encode()
                + body
            )
            await w.drain()
        elif kind == "big_answer":  # a valid answer of BIG_ANSWER bytes, its usage at the end as every API has it
            head = b'{"id": "x", "object": "chat.completion", "model": "gpt-4o-mini", "choices": [{"index": 0, '
            head += b'"message": {"role": "assistant", "content": "'
            tail = b'"}}], "usage": {"prompt_tokens": 12, "completion_tokens": 20}}'
            w.write(_head("application/json") + _chunk(head))
            for _ in range((BIG_ANSWER - len(head) - len(tail)) // len(PIECE)):
                w.write(_chunk(PIECE))
                await w.drain()
            w.write(_chunk(tail) + b"0\r\n\r\n")
            await w.drain()
        elif kind == "slow_1xx":  # interim answers every 0.2 s for 3 s, then a real one: bytes, but no answer
            for _ in range(15):
                w.write(b"HTTP/1.1 102 Processing\r\n\r\n")
                await w.drain()
                await asyncio.sleep(0.2)
            body = b'{"id": "x", "model": "gpt-4o-mini", "choices": [], "usage": {"prompt_tokens": 1}}'
            w.write(_head("application/json") + _chunk(body) + b"0\r\n\r\n")
            await w.drain()
        elif kind == "absurd_usage":
            body = (
                b'{"id": "x", "object": "chat.completion", "model": "gpt-4o-mini", "choices": [], '
                b'"usage": {"prompt_tokens": 1e400, "completion_tokens": 1000000000000000000000000000000, '
                b'"prompt_tokens_details": {"cached_tokens": -5}}}'
            )
            w.write(
                f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n".encode()
            )
            w.write(body)
            await w.drain()
        else:
            body = json.dumps({"error": {"message": f"unknown hostile kind {kind!r}"}}).encode()
            w.write(f"HTTP/1.1 400 Bad Request\r\ncontent-length: {len(body)}\r\n\r\n".encode() + body)
            await w.drain()
