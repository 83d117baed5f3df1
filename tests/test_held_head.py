"""A stream's head is written by the server while the provider's first event is on its way, and held back until
that event is whole (gateway.held_head): the client never sees a head before the first event, and whatever
replaces a held head (a 502, a 504) reaches it as a whole, valid answer. The real daemon in a subprocess against
a raw provider; the hold itself against a stand-in for uvicorn's request cycle."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h11
import httpx
import pytest

from picometer.asgi import Message
from picometer.gateway.connections import _BUSY
from picometer.gateway.held_head import KEY, HeadHold, answering, of, raw_answer
from tests.hostile import LATE_S, HostileServer
from tests.servers import SimServer, daemon_process, gateway_config

CHAT = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "count the bees"}]}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    tmp = tmp_path_factory.mktemp("held")
    with SimServer() as sim, HostileServer() as evil:
        raw: dict[str, Any] = gateway_config(sim.url, tmp)
        raw["providers"]["evil"] = {"kind": "openai", "base_url": f"{evil.url}/v1", "total_timeout_s": 1.5}
        with daemon_process(raw, tmp) as (url, _):
            yield url, tmp


def record(tmp: Path, request_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        lines = [json.loads(line) for f in sorted((tmp / "logs").glob("usage-*.jsonl")) for line in f.open()]
        found = [rec for rec in lines if rec["request_id"] == request_id]
        if found or time.monotonic() > deadline:
            [rec] = found
            return rec
        time.sleep(0.05)


def local_port(r: httpx.Response) -> int:
    return int(r.extensions["network_stream"].get_extra_info("client_addr")[1])


def test_the_head_comes_with_the_first_event_and_the_connection_serves_the_next_call(daemon: tuple[str, Path]) -> None:
    url, tmp = daemon
    with httpx.Client(trust_env=False, timeout=30) as client:
        start = time.monotonic()
        with client.stream(
            "POST", f"{url}/evil/chat/completions", json=CHAT, headers={"x-hostile": "sse_late_first"}
        ) as r:
            head_after = time.monotonic() - start
            body = b"".join(r.iter_bytes())
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        assert head_after >= LATE_S * 0.9, "the head waited for the provider's first whole event"
        assert b'"content": "hi"' in body and body.endswith(b"data: [DONE]\n\n")
        assert b'"usage"' not in body, "the usage chunk picometer asked for stays hidden"
        rec = record(tmp, r.headers["x-picometer-request-id"])
        assert (rec["status"], rec["http_status"], rec["input_tokens"], rec["output_tokens"]) == ("ok", 200, 9, 2)
        assert rec["ttft_ms"] >= LATE_S * 1000 * 0.9
        # The held head was released as sent: the server's HTTP state on the connection is intact.
        again = client.post(f"{url}/openai/chat/completions", json={**CHAT, "stream": False})
        assert again.status_code == 200 and local_port(again) == local_port(r)


def test_a_stream_stalled_before_its_first_event_gets_a_whole_504(daemon: tuple[str, Path]) -> None:
    url, tmp = daemon
    with httpx.Client(trust_env=False, timeout=30) as client:
        r = client.post(f"{url}/evil/chat/completions", json=CHAT, headers={"x-hostile": "sse_stalled"})
        assert r.status_code == 504 and r.json()["error"]["code"] == "upstream_timeout", r.text
        assert r.headers["connection"] == "close"  # the held head was taken as sent: this connection ends here
        rec = record(tmp, r.headers["x-picometer-request-id"])
        assert (rec["status"], rec["error_type"], rec["http_status"]) == ("error", "timeout", 504)
        assert client.post(f"{url}/openai/chat/completions", json={**CHAT, "stream": False}).status_code == 200


def test_a_client_gone_while_the_head_is_held_is_recorded_as_gone(daemon: tuple[str, Path]) -> None:
    url, tmp = daemon

    async def leave_early() -> str:
        async with httpx.AsyncClient(trust_env=False, timeout=30) as client:
            ids: list[str] = []

            async def call() -> None:
                r = await client.post(f"{url}/evil/chat/completions", json=CHAT, headers={"x-hostile": "sse_stalled"})
                ids.append(r.headers["x-picometer-request-id"])

            task = asyncio.ensure_future(call())
            await asyncio.sleep(0.5)
            task.cancel()  # hangs up: no head has reached it
            await asyncio.gather(task, return_exceptions=True)
            assert not ids
        return ""

    asyncio.run(leave_early())
    time.sleep(0.5)
    lines = [json.loads(line) for f in sorted((tmp / "logs").glob("usage-*.jsonl")) for line in f.open()]
    gone = [rec for rec in lines if rec["error_type"] == "client_disconnected"]
    assert gone and gone[-1]["provider"] == "evil" and gone[-1]["http_status"] == 200
    assert httpx.get(f"{url}/-/health", trust_env=False).status_code == 200


# ---------------------------------------------------------------- the hold itself, over a stand-in cycle


class Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


class Cycle:
    """What HeadHold uses of uvicorn's request cycle: its transport, and a send that writes to it."""

    def __init__(self) -> None:
        self.transport: Any = Transport()
        self.scope: dict[str, Any] = {}
        self.sent: list[Message] = []
        self.response_started = self.response_complete = False

    async def send(self, message: Message) -> None:
        self.sent.append(message)
        self.response_started = True
        self.response_complete = message["type"] == "http.response.body" and not message.get("more_body", False)
        self.transport.write(b"server:" + message.get("body", b"-"))


def test_a_held_head_goes_out_with_the_first_event_in_one_write() -> None:
    cycle = Cycle()
    real = cycle.transport
    hold = HeadHold(cycle)
    hold.hold()
    assert hold.holding
    asyncio.run(cycle.send({"type": "http.response.start", "status": 200}))
    asyncio.run(cycle.send({"type": "http.response.body", "body": b"event"}))
    assert real.writes == [], "nothing reaches the client while held"
    hold.release()
    assert real.writes == [b"server:-server:event"] and not hold.holding
    asyncio.run(cycle.send({"type": "http.response.body", "body": b"next"}))
    assert real.writes[-1] == b"server:next" and cycle.transport is real


def test_an_answer_in_place_of_a_held_head_is_written_whole_and_the_connection_closed() -> None:
    cycle = Cycle()
    real = cycle.transport
    hold = HeadHold(cycle)
    cycle.scope["extensions"] = {KEY: hold}
    assert of(cycle.scope) is hold
    hold.hold()
    asyncio.run(cycle.send({"type": "http.response.start", "status": 200}))

    async def not_this(message: Message) -> None:
        raise AssertionError("a held head's replacement goes raw, not through the server")

    send = answering(cycle.scope, not_this)
    body = b'{"error": {"code": "upstream_bad_response"}}'
    asyncio.run(
        send({"type": "http.response.start", "status": 502, "headers": [(b"content-type", b"application/json")]})
    )
    asyncio.run(send({"type": "http.response.body", "body": body, "more_body": False}))
    [written] = real.writes
    assert written == (
        b"HTTP/1.1 502 Bad Gateway\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n" + body
    )
    assert real.closed and not hold.holding
    assert cycle.sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}, "the server's ends too"
    assert real.writes == [written], "and what the server wrote for it went nowhere"


def test_with_nothing_held_answers_go_to_the_server() -> None:
    cycle = Cycle()

    async def server(message: Message) -> None:
        pass

    assert answering({}, server) is server  # plain uvicorn: no hold in the scope
    cycle.scope["extensions"] = {KEY: HeadHold(cycle)}
    assert answering(cycle.scope, server) is server


def test_a_replacement_for_a_head_the_server_never_got_is_written_alone() -> None:
    """Cut off (total_timeout_s) before the held head reached the server: the answer still goes out whole, any
    status code, and the server is asked for nothing it would refuse."""
    cycle = Cycle()
    real = cycle.transport
    hold = HeadHold(cycle)
    hold.hold()
    asyncio.run(hold.instead({"type": "http.response.start", "status": 529, "headers": []}))
    asyncio.run(hold.instead({"type": "http.response.body", "body": b"{}", "more_body": False}))
    assert real.writes == [b"HTTP/1.1 529 \r\nconnection: close\r\n\r\n{}"] and real.closed
    assert cycle.sent == []


def test_answers_written_past_the_server_are_whole_http_answers() -> None:
    """The busy 503 (gateway.connections) and a held head's replacement, read by a real HTTP parser."""
    for raw, status in ((_BUSY, 503), (raw_answer(502, [(b"content-length", b"2")], b"{}"), 502)):
        client = h11.Connection(h11.CLIENT)
        client.send(h11.Request(method="POST", target="/", headers=[("host", "x"), ("content-length", "0")]))
        client.send(h11.EndOfMessage())
        client.receive_data(raw)
        head = client.next_event()
        assert isinstance(head, h11.Response) and head.status_code == status
        assert (b"connection", b"close") in head.headers
        body = client.next_event()
        assert isinstance(body, h11.Data) and json.loads(body.data) is not None
        assert isinstance(client.next_event(), h11.EndOfMessage)
