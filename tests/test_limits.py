"""Output-token caps in the three request shapes, and the worst case a call can cost."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from picometer.duration import format_duration, parse_duration
from picometer.metering.limits import (
    DEFAULT_OUTPUT_ALLOWANCE,
    OverCap,
    apply_cap,
    field_to_set,
    limit_fields,
    output_limit,
)
from picometer.metering.worst import worst_usage

OPENAI = "https://api.openai.com/v1"
MSG = [{"role": "user", "content": "hi"}]
SHAPES = [
    ("openai", "chat/completions", {"model": "gpt-4o-mini", "messages": MSG, "max_completion_tokens": 5000}),
    ("openai", "chat/completions", {"model": "gpt-4o-mini", "messages": MSG, "max_tokens": 5000}),
    ("openai", "responses", {"model": "gpt-4o-mini", "input": "hi", "max_output_tokens": 5000}),
    ("anthropic", "messages", {"model": "claude-haiku-4-5", "messages": MSG, "max_tokens": 5000}),
]
IDS = ["chat-new-field", "chat-old-field", "responses", "anthropic"]


@pytest.mark.parametrize(("kind", "endpoint", "body"), SHAPES, ids=IDS)
def test_clamp_lowers_the_limit_to_the_cap(kind: str, endpoint: str, body: dict[str, Any]) -> None:
    body = dict(body)
    assert apply_cap(body, kind, endpoint, OPENAI, 2048, "clamp")
    assert output_limit(body, limit_fields(kind, endpoint)) == 2048
    assert body["messages" if "messages" in body else "input"], "nothing else touched"


@pytest.mark.parametrize(("kind", "endpoint", "body"), SHAPES, ids=IDS)
def test_reject_names_the_field_and_leaves_the_body(kind: str, endpoint: str, body: dict[str, Any]) -> None:
    before = dict(body)
    with pytest.raises(OverCap) as e:
        apply_cap(body, kind, endpoint, OPENAI, 2048, "reject")
    assert e.value.requested == 5000 and e.value.cap == 2048 and e.value.field in body
    assert body == before


@pytest.mark.parametrize(("kind", "endpoint", "body"), SHAPES, ids=IDS)
def test_a_limit_within_the_cap_is_left_alone(kind: str, endpoint: str, body: dict[str, Any]) -> None:
    body = dict(body)
    before = dict(body)
    assert not apply_cap(body, kind, endpoint, OPENAI, 5000, "reject")
    assert body == before


@pytest.mark.parametrize(
    ("kind", "endpoint", "base_url", "field"),
    [
        ("openai", "chat/completions", OPENAI, "max_completion_tokens"),
        ("openai", "chat/completions", "https://openrouter.ai/api/v1", "max_tokens"),
        ("openai", "completions", OPENAI, "max_tokens"),
        ("openai", "responses", OPENAI, "max_output_tokens"),
        ("anthropic", "messages", "https://api.anthropic.com", "max_tokens"),
    ],
)
def test_a_call_without_a_limit_gets_the_right_field(kind: str, endpoint: str, base_url: str, field: str) -> None:
    body: dict[str, Any] = {"model": "m"}
    assert field_to_set(kind, endpoint, base_url) == field
    assert apply_cap(body, kind, endpoint, base_url, 300, "reject")
    assert body == {"model": "m", field: 300}


def test_embeddings_have_no_output_to_cap() -> None:
    body = {"model": "text-embedding-3-small", "input": "hi"}
    assert not apply_cap(body, "openai", "embeddings", OPENAI, 10, "reject")
    assert worst_usage(body, "openai", "embeddings").output_tokens == 0


def test_clamping_keeps_anthropic_thinking_below_max_tokens() -> None:
    body = {"max_tokens": 20000, "thinking": {"type": "enabled", "budget_tokens": 16000}, "messages": MSG}
    apply_cap(body, "anthropic", "messages", "", 4096, "clamp")
    assert body["max_tokens"] == 4096 and body["thinking"] == {"type": "enabled", "budget_tokens": 4095}


def test_both_chat_fields_are_clamped_and_the_tighter_one_counts() -> None:
    body = {"max_tokens": 9000, "max_completion_tokens": 3000}
    assert output_limit(body, limit_fields("openai", "chat/completions")) == 3000
    apply_cap(body, "openai", "chat/completions", OPENAI, 2048, "clamp")
    assert body == {"max_tokens": 2048, "max_completion_tokens": 2048}


def test_the_worst_case_counts_every_choice_and_bounds_the_input() -> None:
    text = "héllo wörld 你好 🙂" * 50
    body = {"messages": [{"role": "user", "content": text}], "max_tokens": 100, "n": 3}
    worst = worst_usage(body, "openai", "chat/completions")
    assert worst.output_tokens == 300
    assert worst.input_tokens >= len(text.encode()) / 3, "a byte-level tokenizer needs no more tokens than this"
    no_limit = worst_usage({"messages": MSG}, "openai", "chat/completions")
    assert no_limit.output_tokens == DEFAULT_OUTPUT_ALLOWANCE
    legacy = worst_usage({"prompt": "x", "max_tokens": 10, "best_of": 4}, "openai", "completions")
    assert legacy.output_tokens == 40


@given(
    limit=st.one_of(st.none(), st.integers(1, 10**6)),
    cap=st.integers(1, 10**5),
    shape=st.sampled_from(SHAPES),
)
def test_after_a_clamp_no_call_asks_for_more_than_the_cap(
    limit: int | None, cap: int, shape: tuple[str, str, dict[str, Any]]
) -> None:
    kind, endpoint, template = shape
    fields = limit_fields(kind, endpoint)
    body = {k: v for k, v in template.items() if k not in fields}
    if limit is not None:
        body[fields[-1]] = limit
    apply_cap(body, kind, endpoint, OPENAI, cap, "clamp")
    assert output_limit(body, fields) == (cap if limit is None else min(limit, cap))


# ---------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("30m", 1800), ("2h", 7200), ("1d", 86400), ("1h30m", 5400), (" 1.5h ", 5400)]
)
def test_durations_as_people_type_them(text: str, seconds: int) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "2", "h", "2x", "-1h", "0m", "2h junk", "400d"])
def test_bad_durations_say_how_to_write_one(text: str) -> None:
    with pytest.raises(ValueError, match=r"90s|366d"):
        parse_duration(text)


@given(st.integers(1, 366 * 1440))
def test_formatted_minutes_parse_back(minutes: int) -> None:
    text = format_duration(parse_duration(f"{minutes}m")).replace(" ", "")
    assert abs(parse_duration(text).total_seconds() - minutes * 60) < (3600 if "d" in text else 60)
