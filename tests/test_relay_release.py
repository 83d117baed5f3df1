"""An answer read to its end gives its upstream connection back before the client is sent the end of it: a slow
client never holds one of the pool's connections."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx

from picometer.asgi import Message
from picometer.gateway.relay import AnswersHeld, Relay
from picometer.gateway.settle import Outcome
from picometer.record import Record

EVENTS = [
    b'data: {"model": "gpt-4o-mini", "choices": [{"delta": {"role": "assistant", "content": ""}}]}\n\n',
    b'data: {"model": "gpt-4o-mini", "choices": [{"delta": {"content": "Hello"}}]}\n\n',
    b'data: {"model": "gpt-4o-mini", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1}}\n\n',
    b"data: [DONE]\n\n",
]
ANSWER = b'{"model": "gpt-4o-mini", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1}}'


class Pieces(httpx.AsyncByteStream):
    def __init__(self, parts: list[bytes]) -> None:
        self.parts = parts

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for part in self.parts:
            yield part


def relayed(ctype: str, parts: list[bytes], stream: bool) -> list[tuple[str, bool]]:
    """(message type, whether the upstream response was closed when it went out) for each message sent."""
    response = httpx.Response(200, headers=[("content-type", ctype)], stream=Pieces(parts))
    sent: list[tuple[str, bool]] = []

    async def send(message: Message) -> None:
        last = message["type"] == "http.response.body" and not message.get("more_body", False)
        sent.append((message["type"] + (".end" if last else ""), response.is_closed))

    record = Record(ts="2026-11-30T00:00:00.000Z", request_id="r", status="ok")
    relay = Relay(Outcome(), send, "r", lambda: record, lambda: 1.0)

    async def run() -> None:
        if stream:
            await relay.stream(response, "openai", "chat/completions", True, True, 10**6)
        else:
            await relay.json(response, "openai", "openai", True, 10**6, AnswersHeld(10**6))

    asyncio.run(run())
    return sent


def test_a_whole_answer_is_sent_after_its_connection_went_back() -> None:
    sent = relayed("application/json", [ANSWER[:40], ANSWER[40:]], stream=False)
    assert sent[0] == ("http.response.start", True) and all(closed for _, closed in sent)


def test_a_stream_ends_for_the_client_after_its_connection_went_back() -> None:
    sent: list[Any] = relayed("text/event-stream", EVENTS, stream=True)
    assert sent[-1] == ("http.response.body.end", True)
    assert not sent[0][1], "the stream's first events go out as they come, its connection still in use"
