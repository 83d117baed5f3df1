"""Retry policy maths: jittered bounded backoff, provider wait hints, the retry budget, the circuit. No sleeping."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from picometer.gateway.retry import (
    Circuit,
    RetryBudget,
    backoff,
    delay_before_retry,
    error_type_for_status,
    is_retryable_status,
    wait_hint,
)

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
unit = st.floats(0, 1, exclude_max=True)


@given(attempt=st.integers(1, 40), base=st.floats(0.001, 5), cap=st.floats(0.001, 120), r=unit)
def test_backoff_is_bounded_by_the_exponential_and_the_cap(attempt: int, base: float, cap: float, r: float) -> None:
    delay = backoff(attempt, base, cap, lambda: r)
    assert 0 <= delay <= min(cap, base * 2 ** (attempt - 1)) + 1e-9


@given(attempt=st.integers(1, 10), seed=st.integers(0, 2**32))
def test_backoff_is_jittered_across_the_whole_range(attempt: int, seed: int) -> None:
    rng = random.Random(seed)
    ceiling = min(20.0, 0.5 * 2 ** (attempt - 1))
    delays = [backoff(attempt, 0.5, 20.0, rng.random) for _ in range(200)]
    assert len(set(delays)) > 150, "clients that failed together do not come back together"
    assert min(delays) < ceiling * 0.2 and max(delays) > ceiling * 0.8


@given(hint=st.floats(0, 200), attempt=st.integers(1, 10), r=unit)
def test_a_providers_hint_is_honoured_up_to_max_delay(hint: float, attempt: int, r: float) -> None:
    delay = delay_before_retry(attempt, hint, 0.5, 20.0, lambda: r)
    if hint > 20.0:
        assert delay is None, "asked to wait longer than we would: the client hears it at once"
    else:
        assert delay is not None and hint <= delay <= 20.0


@given(seconds=st.integers(0, 86_400))
def test_retry_after_in_seconds_and_as_an_http_date(seconds: int) -> None:
    assert wait_hint({"retry-after": str(seconds)}, NOW) == seconds
    date = format_datetime(NOW + timedelta(seconds=seconds), usegmt=True)
    assert wait_hint({"retry-after": date}, NOW) == seconds
    assert wait_hint({"retry-after-ms": str(seconds * 1000)}, NOW) == seconds


@given(h=st.integers(0, 3), m=st.integers(0, 59), s=st.integers(0, 59), ms=st.integers(1, 999))
def test_openai_rate_limit_resets_are_read_when_that_limit_is_exhausted(h: int, m: int, s: int, ms: int) -> None:
    text = (f"{h}h" if h else "") + (f"{m}m" if m or h else "") + f"{s}s"
    expected = h * 3600 + m * 60 + s
    headers = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": text}
    assert wait_hint(headers, NOW) == expected
    tokens = {**headers, "x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": f"{ms}ms"}
    assert wait_hint(tokens, NOW) == pytest.approx(max(expected, ms / 1000)), "the later of two exhausted limits"
    assert wait_hint({**headers, "x-ratelimit-remaining-requests": "12"}, NOW) is None, "not exhausted: no hint"


def test_unusable_hints_are_ignored() -> None:
    for value in ("soon", "", "Thu, 99 Foo 2026", "-5"):
        hint = wait_hint({"retry-after": value}, NOW)
        assert hint is None or hint == 0
    assert wait_hint({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1x"}, NOW) is None


def test_which_answers_are_retried() -> None:
    quota = json.dumps({"error": {"type": "insufficient_quota", "code": "insufficient_quota", "message": "x"}})
    rate = json.dumps({"error": {"type": "requests", "code": "rate_limit_exceeded", "message": "Rate limit reached"}})
    assert (
        not is_retryable_status(429, quota.encode()) and error_type_for_status(429, quota.encode()) == "quota_exceeded"
    )
    assert is_retryable_status(429, rate.encode()) and error_type_for_status(429, rate.encode()) == "rate_limited"
    anthropic = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    assert is_retryable_status(529, json.dumps(anthropic).encode())
    assert error_type_for_status(529) == "overloaded"
    assert not is_retryable_status(402) and error_type_for_status(402) == "quota_exceeded", "no wait buys credit"
    for status in (408, 409, 500, 502, 503, 504):
        assert is_retryable_status(status)
    for status in (400, 401, 403, 404, 413, 422, 501):
        assert not is_retryable_status(status), "a client error fails the same way every time"


@given(
    steps=st.lists(st.tuples(st.floats(0, 3), st.integers(0, 20), st.integers(0, 100)), min_size=1, max_size=80),
    ratio=st.sampled_from([0.0, 0.1, 0.2, 0.5]),
)
def test_the_retry_budget_bounds_upstream_calls_over_any_minute(
    steps: list[tuple[float, int, int]], ratio: float
) -> None:
    """Upstream calls over the run <= first attempts x (1 + ratio) + floor per window spanned."""
    budget = RetryBudget(ratio)
    now, firsts, granted = 1000.0, 0, 0
    for dt, new_requests, wanted_retries in steps:
        now += dt
        for _ in range(new_requests):
            budget.first_attempt(now)
        firsts += new_requests
        granted += sum(budget.try_retry(now) for _ in range(wanted_retries))
    windows = (now - 1000.0) // 60 + 2
    assert granted <= ratio * firsts + budget.floor * windows
    state = budget.state(now)
    assert state["retries"] <= ratio * state["first_attempts"] + budget.floor


def test_the_retry_budget_refills_as_the_window_moves_on() -> None:
    budget = RetryBudget(0.2, floor=0)
    for _ in range(10):
        budget.first_attempt(0.0)
    assert [budget.try_retry(0.0) for _ in range(3)] == [True, True, False]
    assert not budget.try_retry(59.0)
    assert not budget.try_retry(61.0), "no new calls: nothing to retry on"
    for _ in range(5):
        budget.first_attempt(61.0)
    assert budget.try_retry(61.0), "the old window is gone; the new calls earn one retry"


def test_the_circuit_opens_fails_fast_then_lets_one_trial_through() -> None:
    c = Circuit(failures=3, open_s=30)
    for t in range(3):
        assert c.allow(float(t)) is None
        c.failure(float(t))
    assert c.state == "open" and c.allow(10.0) == 22.0
    assert c.allow(33.0) is None and c.state == "half_open", "the first call after open_s is the trial"
    assert c.allow(33.1) is not None, "one trial at a time"
    c.failure(34.0)
    assert c.state == "open" and c.allow(40.0) == 24.0, "a failed trial opens it again"
    assert c.allow(64.5) is None
    c.success()
    assert c.state == "closed" and c.allow(64.6) is None and c.consecutive == 0


def test_a_cancelled_trial_frees_the_next_call_to_try() -> None:
    c = Circuit(failures=1, open_s=5)
    c.failure(0.0)
    assert c.allow(6.0) is None
    c.release()
    assert c.allow(6.1) is None, "a client that hung up does not leave the circuit stuck"


def test_circuit_failures_zero_never_opens() -> None:
    c = Circuit(failures=0)
    for t in range(100):
        c.failure(float(t))
    assert c.allow(100.0) is None
