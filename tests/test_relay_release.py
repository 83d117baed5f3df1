"""A whole answer too big to go to the client in one write gives its upstream connection back before it is sent:
a slow client never holds one of the pool's connections while it takes its time over a big answer. A small one of a
declared length is sent with its last byte, and the end of its body is read after: its connection serves again."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from picometer.asgi import Message
from picometer.gateway.inflow import AnswersHeld
from picometer.gateway.relay import Relay
from picometer.gateway.settle import Outcome
from picometer.record import Record
from tests.oracle import independent_cost
from tests.relayed import answer
from tests.servers import GatewayServer, SimServer

ANSWER = b'{"model": "gpt-4o-mini", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1}}'


def relayed(ctype: str, parts: list[bytes]) -> list[tuple[str, bool]]:
    """(message type, whether the upstream response was closed when it went out) for each message sent."""
    response = answer(ctype, parts)
    sent: list[tuple[str, bool]] = []

    async def send(message: Message) -> None:
        last = message["type"] == "http.response.body" and not message.get("more_body", False)
        sent.append((message["type"] + (".end" if last else ""), response.is_closed))

    record = Record(ts="2026-11-30T00:00:00.000Z", request_id="r", status="ok")
    relay = Relay(Outcome(), send, "r", lambda write=True: record, lambda: 1.0)

    asyncio.run(relay.json(response, "openai", "openai", True, 10**6, AnswersHeld(10**6)))
    return sent


def test_a_big_whole_answer_is_sent_after_its_connection_went_back() -> None:
    big = ANSWER[:-1] + b', "pad": "' + b"x" * 100_000 + b'"}'
    sent = relayed("application/json", [big[:40_000], big[40_000:]])
    assert sent[0] == ("http.response.start", True) and all(closed for _, closed in sent)


def test_small_whole_answers_go_out_before_their_body_ends_and_their_connection_serves_again(
    sim: SimServer, gateway: GatewayServer
) -> None:
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}
    answers = []
    with httpx.Client(trust_env=False, timeout=10) as client:
        for _ in range(5):
            r = client.post(f"{gateway.url}/openai/chat/completions", json=chat)
            assert r.status_code == 200 and int(r.headers["content-length"]) == len(r.content)
            answers.append((r.json()["usage"], float(r.headers["x-picometer-cost-usd"])))
    pool = gateway.daemon.gateway.upstream.transport._pool
    assert len(pool.connections) == 1 and pool.connections[0].is_idle(), "one connection, back in the pool"
    for rec, (usage, cost) in zip(gateway.records(5), answers, strict=True):
        assert (rec["status"], rec["error_type"], rec["usage_source"]) == ("ok", None, "provider")
        assert (rec["input_tokens"], rec["output_tokens"]) == (usage["prompt_tokens"], usage["completion_tokens"])
        tokens = {"input": usage["prompt_tokens"], "output": usage["completion_tokens"]}
        assert rec["cost_usd"] == pytest.approx(independent_cost("gpt-4o-mini", "openai", tokens)) == cost
