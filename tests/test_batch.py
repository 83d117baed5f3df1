"""Batch results read line by line as they pass: any chunking gives the same count, garbage is skipped and
counted, an endless line is not held in memory."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from picometer.metering import batch
from picometer.metering.batch import BatchMeter
from picometer.metering.usage import Usage


def per_token(model: str | None, u: Usage) -> tuple[float | None, float]:
    """A made-up price: a micro-dollar per token; no price for the model "unknown"."""
    return (None, 0.0) if model == "unknown" else ((u.input_tokens + u.output_tokens) / 1e6, 0.0)


def line(prompt: int, completion: int, model: str = "gpt-4o-mini") -> bytes:
    body = {"model": model, "usage": {"prompt_tokens": prompt, "completion_tokens": completion}}
    return json.dumps({"custom_id": "x", "response": {"status_code": 200, "body": body}}).encode() + b"\n"


def meter_of(body: bytes, cuts: list[int]) -> BatchMeter:
    m = BatchMeter("openai", per_token)
    last = 0
    for cut in [*sorted(c % (len(body) + 1) for c in cuts), len(body)]:
        m.feed(body[last:cut])
        last = max(last, cut)
    m.close()
    return m


@given(
    rows=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 10**5)), max_size=20),
    cuts=st.lists(st.integers(0, 10**6), max_size=30),
    trailing_newline=st.booleans(),
)
def test_any_chunking_counts_the_same(rows: list[tuple[int, int]], cuts: list[int], trailing_newline: bool) -> None:
    body = b"".join(line(p, c) for p, c in rows)
    if not trailing_newline:
        body = body.rstrip(b"\n")
    m = meter_of(body, cuts)
    assert m.results == len(rows) and m.unreadable == 0
    assert m.usage.input_tokens == sum(p for p, _ in rows) and m.usage.output_tokens == sum(c for _, c in rows)
    assert abs(m.cost_usd - sum(p + c for p, c in rows) / 1e6) < 1e-9


def test_garbage_lines_are_counted_as_unreadable_and_the_rest_still_metered() -> None:
    body = b"not json\n\xff\xfe\n" + line(10, 5) + b"[1, 2]\n" + line(1, 1, "unknown")
    m = meter_of(body, [3, 17])
    assert (m.results, m.unreadable, m.unpriced) == (2, 2, 1)
    assert m.usage.input_tokens == 11 and m.cost_usd == 15 / 1e6


def test_an_endless_line_is_dropped_not_buffered(monkeypatch: Any) -> None:
    monkeypatch.setattr(batch, "MAX_LINE", 1000)
    m = BatchMeter("openai", per_token)
    for _ in range(100):
        m.feed(b"x" * 500)  # 50 KB without a newline
        assert len(m._pending) <= 1500
    m.feed(b"\n" + line(7, 3))
    m.close()
    assert (m.results, m.unreadable, m.usage.input_tokens) == (1, 1, 7)
