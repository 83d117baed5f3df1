"""A stream's chunks are written past the server's h11 (gateway.chunked), in HTTP/1.1 chunked framing. Read by a
real HTTP parser they are the provider's events exactly; the connection serves the next call; a client that reads
slowly gets every byte, in order, the writes waiting on it through the server; an HTTP/1.0 client gets the stream
without chunk framing. The real daemon on a loopback port; the writer itself over a real h11 connection."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import h11
import httpx
import pytest

from picometer.gateway import chunked
from picometer.gateway.held_head import HeadHold
from tests.oracle import independent_cost
from tests.replay import ReplayServer, sse
from tests.servers import GatewayServer, SimServer, gateway_config

ASK = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "count the bees"}]}
USAGE = {"prompt_tokens": 12, "completion_tokens": 3000}


def long_stream(n: int) -> list[dict[str, Any] | str]:
    """A chat stream of `n` text deltas of 600 characters each, its usage chunk and [DONE]: about 0.8 KB an event."""
    text = "bees " * 120
    deltas: list[dict[str, Any] | str] = [
        {"model": "gpt-4o-mini", "choices": [{"index": 0, "delta": {"content": f"{i}:{text}"}}]} for i in range(n)
    ]
    return [*deltas, {"model": "gpt-4o-mini", "choices": [], "usage": USAGE}, "[DONE]"]


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[GatewayServer, ReplayServer]]:
    with SimServer() as sim, ReplayServer() as replay:
        raw = gateway_config(sim.url, tmp_path)
        raw["providers"]["replay"] = {"kind": "openai", "base_url": f"{replay.url}/v1"}
        with GatewayServer(raw) as gw:
            yield gw, replay


@pytest.fixture
def direct_writes(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """What each chunk written past the server came to: True written, False sent through the server instead."""
    seen: list[bool] = []
    put = chunked._Direct.put

    def spy(self: Any, data: bytes) -> bool:
        seen.append(put(self, data))
        return seen[-1]

    monkeypatch.setattr(chunked._Direct, "put", spy)
    return seen


def assert_priced(rec: dict[str, Any], inp: int, out: int, *, stream: bool) -> None:
    """An ok call's record: the provider's token counts, priced at gpt-4o-mini's list price."""
    assert (rec["status"], rec["error_type"], rec["http_status"], rec["stream"]) == ("ok", None, 200, stream), rec
    assert (rec["usage_source"], rec["input_tokens"], rec["output_tokens"]) == ("provider", inp, out)
    assert rec["cost_usd"] == pytest.approx(independent_cost("gpt-4o-mini", "openai", {"input": inp, "output": out}))


def request(path: str, body: dict[str, Any], version: str = "1.1") -> bytes:
    data = json.dumps(body).encode()
    head = [f"POST {path} HTTP/{version}", "Host: 127.0.0.1", "Content-Type: application/json"]
    head.append(f"Content-Length: {len(data)}")
    return "\r\n".join(head).encode() + b"\r\n\r\n" + data


def read_answer(s: socket.socket, client: h11.Connection) -> tuple[h11.Response, bytes]:
    """One whole answer on a kept-alive connection, through h11's client side (which checks the framing)."""
    head: h11.Response | None = None
    body = bytearray()
    while True:
        event = client.next_event()
        if event is h11.NEED_DATA:
            client.receive_data(s.recv(65536))
        elif isinstance(event, h11.Response):
            head = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            assert head is not None
            return head, bytes(body)
        else:
            raise AssertionError(f"unexpected {event!r}")


def ask(s: socket.socket, client: h11.Connection, path: str, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    headers = [("host", "127.0.0.1"), ("content-type", "application/json"), ("content-length", str(len(data)))]
    s.sendall(client.send(h11.Request(method="POST", target=path, headers=headers)) or b"")
    s.sendall((client.send(h11.Data(data=data)) or b"") + (client.send(h11.EndOfMessage()) or b""))


def test_chunks_written_past_the_server_are_the_events_and_the_connection_serves_again(
    servers: tuple[GatewayServer, ReplayServer], direct_writes: list[bool]
) -> None:
    gw, _ = servers
    url = httpx.URL(gw.url)
    with socket.create_connection((url.host, url.port), timeout=10) as s:
        client = h11.Connection(h11.CLIENT)
        ask(s, client, "/openai/chat/completions", {**ASK, "stream_options": {"include_usage": True}})
        head, body = read_answer(s, client)
        assert head.status_code == 200 and (b"transfer-encoding", b"chunked") in head.headers
        events = [e.removeprefix(b"data: ") for e in body.split(b"\n\n") if e]
        assert events[-1] == b"[DONE]"
        chunks = [json.loads(e) for e in events[:-1]]  # every event whole: no frame of ours inside one
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
        usage = chunks[-1]["usage"]
        assert text.startswith("Simulated answer") and usage["completion_tokens"] > 0
        assert direct_writes and all(direct_writes), "the stream's chunks went past the server"

        # The server's h11 saw the head and the end only: its state is whole, the connection serves the next call.
        client.start_next_cycle()
        ask(s, client, "/openai/chat/completions", {**ASK, "stream": False})
        again, answer = read_answer(s, client)
        assert again.status_code == 200 and json.loads(answer)["usage"]["total_tokens"] > 0
    first, second = gw.records(wait_for=2)
    assert_priced(first, usage["prompt_tokens"], usage["completion_tokens"], stream=True)
    then = json.loads(answer)["usage"]
    assert_priced(second, then["prompt_tokens"], then["completion_tokens"], stream=False)


def test_a_client_reading_slowly_gets_every_byte_in_order(
    servers: tuple[GatewayServer, ReplayServer], direct_writes: list[bool]
) -> None:
    """10 MB streamed to a client with a small receive buffer that waits before reading (more than the kernel's
    socket buffers hold, 4 MB at most by default): the writes past the server stop while the connection's buffer
    is full and go through the server, which waits for the client."""
    gw, replay = servers
    events = long_stream(12_500)
    replay.answer_sse(events)
    url = httpx.URL(gw.url)
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(30)
        s.connect((url.host, url.port))
        client = h11.Connection(h11.CLIENT)
        ask(s, client, "/replay/chat/completions", {**ASK, "stream_options": {"include_usage": True}})
        time.sleep(1.0)  # not reading: the daemon's buffer for this connection fills
        head, body = read_answer(s, client)
    assert head.status_code == 200
    assert body == sse(events), "every byte, in order, each once"
    assert True in direct_writes and False in direct_writes, "written past the server, then through it while full"
    [rec] = gw.records(wait_for=1)
    assert_priced(rec, 12, 3000, stream=True)
    assert rec["latency_ms"] >= 1000, "the stream waited for its client"


def test_an_http_1_0_client_gets_the_stream_without_chunk_framing(
    servers: tuple[GatewayServer, ReplayServer], direct_writes: list[bool]
) -> None:
    gw, _ = servers
    url = httpx.URL(gw.url)
    data = b""
    with socket.create_connection((url.host, url.port), timeout=10) as s:
        s.sendall(request("/openai/chat/completions", {**ASK, "stream_options": {"include_usage": True}}, "1.0"))
        while chunk := s.recv(65536):  # an HTTP/1.0 body ends with the connection
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"transfer-encoding" not in head.lower()
    events = body.split(b"\n\n")
    assert events[-2:] == [b"data: [DONE]", b""], "the body is the events alone, no chunk sizes among them"
    chunks = [json.loads(e.removeprefix(b"data: ")) for e in events[:-2]]
    assert len(chunks) > 3 and chunks[-1]["usage"]["completion_tokens"] > 0
    assert not direct_writes, "nothing written past the server: its framing is not chunked"
    [rec] = gw.records(wait_for=1)
    assert_priced(rec, chunks[-1]["usage"]["prompt_tokens"], chunks[-1]["usage"]["completion_tokens"], stream=True)


# ---------------------------------------------------------------- the writer, over a real h11 connection


class Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)


def cycle(method: str = "POST", version: bytes = b"1.1") -> SimpleNamespace:
    """What the writer uses of uvicorn's request cycle, with a real h11 server connection that sent its head."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(f"{method} / HTTP/{version.decode()}\r\nhost: x\r\ncontent-length: 0\r\n\r\n".encode())
    assert isinstance(conn.next_event(), h11.Request) and isinstance(conn.next_event(), h11.EndOfMessage)
    transport = Transport()
    transport.write(conn.send(h11.Response(status_code=200, headers=[("content-type", "text/event-stream")])) or b"")
    flow = SimpleNamespace(write_paused=False)
    return SimpleNamespace(
        conn=conn,
        transport=transport,
        flow=flow,
        scope={"method": method},
        disconnected=False,
        response_complete=False,
    )


def test_frames_written_past_h11_and_its_end_read_back_as_the_chunks_sent() -> None:
    c = cycle()
    put = chunked.writer(HeadHold(c))
    assert put is not chunked.NOT_DIRECT
    sent = [b"data: one\n\n", b"data: \xf0\x9f\x90\x9d\n\n", b"x" * 70_000]
    assert all(put(chunk) for chunk in sent)
    c.transport.write(c.conn.send(h11.Data(data=b"through h11")) or b"")  # the two ways mix on one connection
    c.transport.write(c.conn.send(h11.EndOfMessage()) or b"")

    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="POST", target="/", headers=[("host", "x"), ("content-length", "0")]))
    client.send(h11.EndOfMessage())
    client.receive_data(b"".join(c.transport.writes))
    assert isinstance(client.next_event(), h11.Response)
    body = b""
    while isinstance(event := client.next_event(), h11.Data):
        body += event.data
    assert isinstance(event, h11.EndOfMessage) and body == b"".join(sent) + b"through h11"


def test_the_server_writes_what_is_not_plain_chunked_framing_on_a_live_connection() -> None:
    c = cycle()
    put = chunked.writer(HeadHold(c))
    before = list(c.transport.writes)
    assert not put(b""), "an empty frame would end the body"
    c.flow.write_paused = True
    assert not put(b"data: x\n\n"), "a client not reading: the server's send waits for it"
    c.flow.write_paused, c.disconnected = False, True
    assert not put(b"data: x\n\n")
    c.disconnected, c.response_complete = False, True
    assert not put(b"data: x\n\n")
    assert c.transport.writes == before

    assert chunked.writer(HeadHold(cycle(version=b"1.0"))) is chunked.NOT_DIRECT  # its body ends with the connection
    assert chunked.writer(HeadHold(cycle(method="HEAD"))) is chunked.NOT_DIRECT
    assert chunked.writer(None) is chunked.NOT_DIRECT  # a server without a hold (plain uvicorn)
    assert chunked.writer(HeadHold(SimpleNamespace(scope={"method": "POST"}))) is chunked.NOT_DIRECT  # other parts
