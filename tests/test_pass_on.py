"""A whole answer that would take the answers held at once past [server].max_answer_bytes_in_flight is passed on as
it arrives, still held to its provider's max_response_bytes: what was read before counts, and a body that goes past
the bound is cut off for the client and recorded `bad_response`."""

from __future__ import annotations

import asyncio

from picometer.asgi import Message
from picometer.gateway.relay import AnswersHeld, Relay
from picometer.gateway.settle import Outcome, verdict
from picometer.record import Record
from tests.relayed import answer

PART = b'{"model": "gpt-4o-mini", "pad": "' + b"x" * 1000
END = b'", "usage": {"prompt_tokens": 3, "completion_tokens": 1}}'


def passed_on(parts: list[bytes], limit: int) -> tuple[Outcome, bytes, bool]:
    """(outcome, the body the client got, whether its response was ended) with another answer holding the pool."""
    response = answer("application/json", parts)
    held = AnswersHeld(2000)
    held.take(1500, 0)  # another call's answer: this one cannot be held whole next to it
    o, body, ended = Outcome(), bytearray(), [False]

    async def send(message: Message) -> None:
        body.extend(message.get("body", b""))
        ended[0] = ended[0] or (message["type"] == "http.response.body" and not message.get("more_body"))

    record = Record(ts="2026-12-01T00:00:00.000Z", request_id="r")
    relay = Relay(o, send, "r", lambda write=True: record, lambda: 1.0)
    asyncio.run(relay.json(response, "openai", "openai", True, limit, held))
    assert held.bytes == 1500, "the bytes this answer held are given back"
    return o, bytes(body), ended[0]


def test_an_answer_passed_on_reaches_the_client_whole_and_is_metered_from_its_tail() -> None:
    parts = [PART, PART[1:], END]
    o, body, ended = passed_on(parts, 10_000)
    assert body == b"".join(parts) and ended
    assert o.usage is not None and (o.usage.input_tokens, o.usage.output_tokens) == (3, 1)
    assert verdict(o) == ("ok", None)


def test_an_answer_passed_on_past_max_response_bytes_is_cut_off_and_recorded_bad() -> None:
    parts = [PART, PART[1:], PART[1:], END]
    o, body, ended = passed_on(parts, 2500)  # the first piece read before the bound counts towards it
    assert not ended and len(body) <= 2500, "the client sees a broken answer, never more than the bound"
    assert verdict(o) == ("error", "bad_response")
