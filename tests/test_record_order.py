"""A call's record reaches storage before the client's last byte, so a crash can lose a reply, never its record.
A whole answer's head goes out first (it carries the cost, priced already): the record is written while the client
reads it, before the body. A stream's is written once its terminal event is out, and its body ends right after."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from picometer.asgi import Message
from picometer.config import ProviderConfig, config_from_dict
from picometer.gateway.inflow import AnswersHeld
from picometer.gateway.path import Route
from picometer.gateway.proxy import Proxy
from picometer.gateway.settle import Admitted, Facts, Outcome
from picometer.gateway.streamed import StreamRelay
from picometer.metering.budget import Hold
from picometer.metering.endpoints import classify
from picometer.metering.pricing import Pricer
from picometer.record import Record
from tests.clocks import ManualClock
from tests.relayed import answer

ANSWER = b'{"model": "gpt-4o-mini", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1}}'
STREAM = [
    b'data: {"model": "gpt-4o-mini", "choices": [{"delta": {"content": "hi"}}]}\n\n',
    b'data: {"model": "gpt-4o-mini", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1}}\n\n',
    b"data: [DONE]\n\n",
]


def steps(ctype: str, parts: list[bytes], stream: bool) -> tuple[list[str], list[Message]]:
    """Everything in the order it happened: "built", "written", and each message sent to the client."""
    response = answer(ctype, parts)
    order: list[str] = []
    messages: list[Message] = []
    record = Record(ts="2026-12-01T00:00:00.000Z", request_id="r", status="ok", cost_usd=0.000125)
    o = Outcome()

    def finish(write: bool = True) -> Record:
        if o.record is None:
            o.record = record
            order.append("built")
        if write and not o.written:
            o.written = True
            order.append("written")
        return record

    async def send(message: Message) -> None:
        last = message["type"] == "http.response.body" and not message.get("more_body", False)
        order.append("end" if last else message["type"].removeprefix("http.response."))
        messages.append(message)

    relay = StreamRelay(o, send, "r", finish, lambda: 1.0)
    if stream:
        asyncio.run(relay.stream(response, "openai", "chat/completions", True, True, 10**6))
    else:
        asyncio.run(relay.json(response, "openai", "openai", True, 10**6, AnswersHeld(10**6)))
    return order, messages


def test_a_whole_answer_is_written_after_its_head_and_before_its_body() -> None:
    order, messages = steps("application/json", [ANSWER], stream=False)
    assert order == ["built", "start", "written", "body", "end"]
    head = dict(messages[0]["headers"])
    assert head[b"x-picometer-cost-usd"] == b"0.000125"  # priced before the head went out
    assert b"".join(m.get("body", b"") for m in messages[1:]) == ANSWER


def test_a_stream_is_written_once_its_terminal_event_is_out_and_before_its_end() -> None:
    order, messages = steps("text/event-stream", STREAM, stream=True)
    written = order.index("written")
    assert order.count("written") == 1 and order.index("built") == written - 1
    assert order[written - 2 : written] == ["body", "built"] and order[written + 1 :] == ["end"]
    sent_before = messages[: order.index("built")]  # nothing but messages comes before the record is built
    before = b"".join(m.get("body", b"") for m in sent_before)
    assert before.endswith(b"data: [DONE]\n\n")  # the terminal event was out when the record was made
    assert b'"usage"' not in before  # the usage chunk picometer asked for stays hidden


class Settled:
    """The budget's side of a call's end: each settlement it was asked for."""

    def __init__(self) -> None:
        self.holds: list[Hold] = []

    def settle(self, hold: Hold, cost: int, now: datetime) -> None:
        self.holds.append(hold)


def test_a_record_built_before_the_head_is_written_settled_and_counted_once_when_asked() -> None:
    config = config_from_dict({"providers": {"openai": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1"}}})
    written: list[Record] = []
    budget = Settled()
    proxy = Proxy(
        config,
        clock=ManualClock(),
        pricer=Pricer({}),
        recorder=written.append,  # type: ignore[arg-type]
        budget=budget,  # type: ignore[arg-type]
        admission=None,  # type: ignore[arg-type]
        upstream=None,  # type: ignore[arg-type]
    )
    facts = Facts("r", datetime(2026, 12, 1, tzinfo=UTC), 1000.0, provider="openai", model="gpt-4o-mini")
    hold = Hold(5, ())
    req = Admitted(
        facts,
        Route("openai", "chat/completions", None),
        ProviderConfig(),
        classify("chat/completions", "POST"),
        b"{}",
        {},
        None,
        False,
        hold,
    )
    o = Outcome(forwarded=True, reached=True, upstream_status=200, http_status=200, complete=True)

    built = proxy._finish(facts, o, req, write=False)  # priced for the head: nothing written, held or counted yet
    assert built.status == "ok" and not written and not budget.holds and proxy.stats.requests == 0
    assert proxy._finish(facts, o, req) is built
    assert written == [built] and budget.holds == [hold] and proxy.stats.requests == 1
    proxy._finish(facts, o, req)  # the proxy's last word on every call: never a second record
    assert written == [built] and budget.holds == [hold] and proxy.stats.requests == 1
