"""A call's prompt fingerprint is taken off the request path (while the provider works, or when the record is
built), and every record still carries it: answered fast or slow, refused, redacted."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from picometer.conversation import conversation
from picometer.gateway.fingerprint import Fingerprint
from picometer.gateway.upstream import Upstream
from picometer.record import prompt_hash, redact, redacted_prompt
from tests.servers import GatewayServer

BODY = {
    "model": "gpt-4o-mini",
    "max_tokens": 20,
    "messages": [
        {"role": "system", "content": "You file support tickets."},
        {"role": "user", "content": "Mail ana@example.org about the invoice, or call +49 170 1234567 ü"},
    ],
}


def call(gw: GatewayServer, headers: dict[str, str] | None = None, workflow: str = "tickets") -> httpx.Response:
    return httpx.post(
        f"{gw.url}/w/{workflow}/openai/chat/completions", json=BODY, headers=headers or {}, trust_env=False, timeout=30
    )


def expected(body: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    return prompt_hash(body), conversation(body, "gpt-4o-mini"), redacted_prompt(body)


def test_fast_slow_and_refused_calls_all_carry_the_fingerprint(make_gateway: Callable[..., GatewayServer]) -> None:
    gw = make_gateway(storage={"store_prompts": "redacted"}, workflows={"capped": {"daily_usd": 0.000001}})
    assert call(gw).status_code == 200  # answered at once: fingerprinted when the record is built
    assert call(gw, {"x-sim-latency-ms": "300"}).status_code == 200  # fingerprinted while the provider works
    assert call(gw, workflow="capped").status_code == 429  # refused: fingerprinted with its refusal
    fast, slow, refused = gw.records(3)
    assert (refused["status"], refused["error_type"]) == ("blocked", "budget_exceeded")
    for rec in (fast, slow, refused):
        assert (rec["prompt_hash"], rec["conversation"], rec["prompt"]) == expected(BODY)
    assert "ana@example.org" not in fast["prompt"] and "[email]" in fast["prompt"]


def test_the_fingerprint_is_of_the_prompt_as_sent() -> None:
    body: dict[str, Any] = {**BODY, "messages": list(BODY["messages"])}
    fp = Fingerprint(body, "gpt-4o-mini", redact=False)
    body["max_tokens"] = 5  # what admission sets later is not the prompt
    body["messages"] = [{"role": "user", "content": "another prompt"}]
    taken = fp.take()
    assert (taken.prompt_hash, taken.conversation) == expected(BODY)[:2] and taken.prompt is None
    assert fp.take() is taken and taken.prompt_hash == prompt_hash(BODY), "taken once"


def test_redaction_removes_keys_addresses_and_numbers() -> None:
    text = "key sk-abcdefgh12345678, Bearer abc.def-ghi, mail ana@x.org+bob@y.co.uk or call +49 (170) 123-4567."
    assert redact(text) == "key [key], Bearer [key], mail [email][email] or call [number]."
    assert redact("a" * 40_000 + " b@c.de") == "a" * 40_000 + " [email]", "a long run without @ is no address"
    assert redact("a" * 100 + "@c.de") == "a" * 36 + "[email]", "at most 64 characters before the @"


# The patterns as they were before addresses were bounded: for text whose runs fit in an address's bounds,
# redaction must not change.
UNBOUNDED = (
    (re.compile(r"\b(sk|pm|sk-ant|xox[abp])-[A-Za-z0-9_\-]{8,}"), "[key]"),
    (re.compile(r"(?i)bearer\s+[A-Za-z0-9._\-]{8,}"), "Bearer [key]"),
    (re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+"), "[email]"),
    (re.compile(r"\+?\d[\d\s().-]{7,}\d"), "[number]"),
)


@given(st.text(st.sampled_from("ab1_.+-@ é\n("), max_size=60))
def test_bounded_address_pattern_redacts_as_the_unbounded_one(text: str) -> None:
    expected = text
    for pattern, replacement in UNBOUNDED:
        expected = pattern.sub(replacement, expected)
    assert redact(text) == expected


def test_the_fingerprint_is_taken_once_the_request_is_out_while_the_provider_works(
    make_gateway: Callable[..., GatewayServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pool's connections take it as the call starts waiting for its answer, even for an answer that comes
    at once: never after the answer is in."""
    steps: list[tuple[str, float]] = []
    take, attempt = Fingerprint.take, Upstream._attempt

    def taking(self: Fingerprint) -> Fingerprint:
        if self._parts is not None:
            steps.append(("taken", time.monotonic()))
        return take(self)

    async def attempting(self: Upstream, *args: Any) -> Any:
        result = await attempt(self, *args)
        steps.append(("answered", time.monotonic()))
        return result

    monkeypatch.setattr(Fingerprint, "take", taking)
    monkeypatch.setattr(Upstream, "_attempt", attempting)
    gw = make_gateway()
    assert call(gw).status_code == 200 and call(gw, {"x-sim-latency-ms": "300"}).status_code == 200
    assert [name for name, _ in steps] == ["taken", "answered"] * 2
    assert steps[3][1] - steps[2][1] > 0.2, "the slow call's was taken while the provider worked on it"
    for rec in gw.records(2):
        assert (rec["prompt_hash"], rec["conversation"]) == expected(BODY)[:2]
