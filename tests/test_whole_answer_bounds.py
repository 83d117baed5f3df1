"""A whole answer is read within its provider's max_response_bytes, whether it is held whole (sent with its cost
once it is all in) or passed on as it arrives, because holding it would take the answers held at once past
[server].max_answer_bytes_in_flight. Past the bound a held answer gets a 502 and a passed-on one is cut off; both
are recorded `bad_response`."""

from __future__ import annotations

import asyncio

import pytest

from picometer.asgi import Message
from picometer.gateway.inflow import AnswersHeld
from picometer.gateway.refusals import Refusal
from picometer.gateway.relay import Relay
from picometer.gateway.settle import Outcome, verdict
from picometer.record import Record
from tests.relayed import answer

PAD = b"x" * 1000
PART = b'{"model": "gpt-4o-mini", "pad": "' + PAD
END = b'", "usage": {"prompt_tokens": 3, "completion_tokens": 1}}'


def relayed(parts: list[bytes], limit: int, busy: bool) -> tuple[Outcome, list[Message]]:
    """The outcome and the messages sent to the client; `busy`: another call's answer holds most of the pool."""
    held = AnswersHeld(2000)
    if busy:
        held.take(1500, 0)  # this answer cannot be held whole next to that one
    o, sent = Outcome(), []

    async def send(message: Message) -> None:
        sent.append(message)

    record = Record(ts="2026-12-01T00:00:00.000Z", request_id="r", cost_usd=0.5)
    relay = Relay(o, send, "r", lambda write=True: record, lambda: 1.0)
    try:
        asyncio.run(relay.json(answer("application/json", parts), "openai", "openai", True, limit, held))
    finally:
        assert held.bytes == (1500 if busy else 0), "the bytes this answer held are given back"
    return o, sent


def body_of(sent: list[Message]) -> bytes:
    return b"".join(m.get("body", b"") for m in sent)


def ended(sent: list[Message]) -> bool:
    return any(m["type"] == "http.response.body" and not m.get("more_body") for m in sent)


def test_an_answer_held_whole_goes_out_with_its_cost_and_length_whatever_its_pieces() -> None:
    parts = [PART, b"", PAD, b"", END]  # empty pieces from the transport are nothing to send
    o, sent = relayed(parts, 10_000, busy=False)
    head = dict(sent[0]["headers"])
    assert head[b"x-picometer-cost-usd"] == b"0.5" and head[b"content-length"] == str(len(b"".join(parts))).encode()
    assert body_of(sent) == b"".join(parts) and ended(sent)
    assert all(m.get("body") for m in sent[1:-1]), "no empty body message in between"
    assert verdict(o) == ("ok", None)


def test_an_answer_held_whole_past_max_response_bytes_gets_a_502_and_nothing_else() -> None:
    with pytest.raises(Refusal) as refused:
        relayed([PART, PAD, PAD, END], 2500, busy=False)
    assert refused.value.status == 502 and "max_response_bytes" in refused.value.message


def test_an_answer_passed_on_reaches_the_client_whole_and_is_metered_from_its_tail() -> None:
    parts = [PART, PAD, END]
    o, sent = relayed(parts, 10_000, busy=True)
    assert body_of(sent) == b"".join(parts) and ended(sent)
    assert b"x-picometer-cost-usd" not in dict(sent[0]["headers"]), "its cost is known only after its last byte"
    assert o.usage is not None and (o.usage.input_tokens, o.usage.output_tokens) == (3, 1)
    assert verdict(o) == ("ok", None)


def test_an_answer_passed_on_past_max_response_bytes_is_cut_off_and_recorded_bad() -> None:
    o, sent = relayed([PART, PAD, PAD, END], 2500, busy=True)  # what was read before the bound counts
    assert not ended(sent) and len(body_of(sent)) <= 2500, "the client sees a broken answer, never past the bound"
    assert verdict(o) == ("error", "bad_response")
