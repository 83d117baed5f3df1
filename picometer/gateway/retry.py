"""When to call a provider again, how long to wait, and when to stop trying. Pure: no I/O, no sleeping.

- Only failures that happened before the provider did billable work, or that it asks us to retry,
  are retried: connection and DNS errors, connect timeouts, 408, 409, 429 (not quota), 5xx, 529.
- Delays are full-jitter exponential backoff; a provider's Retry-After (or rate-limit reset) is
  honoured when it is within `max_delay_s`, otherwise the failure goes back to the client at once.
- A retry budget per provider: retries add at most `ratio` to the calls of the last minute (plus a
  few, so a quiet provider still gets its retries). An outage never becomes a retry storm.
- A circuit per provider: after consecutive failures, calls fail fast for a while; then one trial
  call is let through, and its success closes the circuit again.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime

from picometer.metering.json_value import loads

RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
# 429s that no wait will cure: the account is out of money or quota.
_QUOTA_CODES = ("insufficient_quota", "billing_hard_limit_reached", "billing_not_active", "spend_limit")
_QUOTA_WORDS = ("quota", "billing", "spend limit", "spending limit", "credit balance")


def error_type_for_status(status: int, body: bytes = b"") -> str:
    if status == 429:
        return "quota_exceeded" if is_quota(body) else "rate_limited"
    if status == 402:
        return "quota_exceeded"  # Payment Required (Anthropic's billing_error, OpenRouter's credits): no wait cures it
    if status == 529:
        return "overloaded"
    if status in (408, 504):
        return "timeout"
    if status == 409:
        return "conflict"
    if status >= 500:
        return "server_error"
    if status in (401, 403):
        return "auth_error"
    return "client_error"


def is_retryable_status(status: int, body: bytes = b"") -> bool:
    return status in RETRY_STATUSES and not (status == 429 and is_quota(body))


def is_quota(body: bytes) -> bool:
    """An OpenAI-style insufficient_quota (or a spend limit) rather than a rate limit."""
    try:
        error = loads(body).get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, dict):
        codes = f"{error.get('code')} {error.get('type')}".lower()
        if any(code in codes for code in _QUOTA_CODES):
            return True
        message = str(error.get("message", "")).lower()
    else:
        message = body[:2000].decode("utf-8", "replace").lower()
    return any(word in message for word in _QUOTA_WORDS)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def _go_duration(text: str) -> float | None:
    """OpenAI's x-ratelimit-reset-* values: "1s", "6m0s", "20ms", "1h2m3.5s"."""
    parts = _DURATION.findall(text.strip())
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        return None
    return sum(float(n) * _UNIT_S[u] for n, u in parts)


def wait_hint(headers: Mapping[str, str], now: datetime) -> float | None:
    """Seconds the provider asks us to wait: retry-after-ms, Retry-After (seconds or an HTTP date), or
    the reset of an exhausted x-ratelimit-* quota. None when it says nothing usable."""
    ms = headers.get("retry-after-ms", "")
    try:
        return max(float(ms) / 1000, 0.0)
    except ValueError:
        pass
    after = headers.get("retry-after", "").strip()
    if after:
        try:
            return max(float(after), 0.0)
        except ValueError:
            try:
                when = parsedate_to_datetime(after)
            except (TypeError, ValueError):
                when = None
            if when is not None and when.tzinfo is not None:
                return max((when - now).total_seconds(), 0.0)
    resets = []
    for kind in ("requests", "tokens"):
        reset = _go_duration(headers.get(f"x-ratelimit-reset-{kind}", ""))
        if reset is not None and headers.get(f"x-ratelimit-remaining-{kind}", "0").strip() == "0":
            resets.append(reset)
    return max(resets) if resets else None


def backoff(attempt: int, base_s: float, max_s: float, rand: Callable[[], float]) -> float:
    """Full jitter: uniform in [0, min(max_s, base_s * 2^(attempt - 1))] for the wait after `attempt` failed."""
    return rand() * min(max_s, base_s * 2.0 ** min(attempt - 1, 32))


def delay_before_retry(
    attempt: int, hint: float | None, base_s: float, max_s: float, rand: Callable[[], float]
) -> float | None:
    """How long to wait before the next attempt; None when the provider asks for longer than max_s."""
    if hint is None:
        return backoff(attempt, base_s, max_s, rand)
    if hint > max_s:
        return None
    # At least what the provider asked, spread a little so waiting clients do not return together.
    return min(max_s, hint + backoff(1, base_s, max_s, rand))


@dataclass
class RetryBudget:
    """Retries over a rolling window may be at most `ratio` x first attempts + `floor`."""

    ratio: float
    window_s: float = 60.0
    floor: int = 20  # retries always allowed per window: a quiet provider's rare failure is still retried
    slots: int = 12
    _counts: dict[int, list[int]] = field(default_factory=dict)  # slot -> [first attempts, retries]
    _now: tuple[int, list[int]] | None = None  # the current slot and its counts: most calls land in it

    def _slot(self, now: float) -> list[int]:
        slot = int(now // (self.window_s / self.slots))
        if self._now is not None and self._now[0] == slot:
            return self._now[1]
        for old in [s for s in self._counts if s <= slot - self.slots]:
            del self._counts[old]
        counts = self._counts.setdefault(slot, [0, 0])
        self._now = (slot, counts)
        return counts

    def _totals(self) -> tuple[int, int]:
        return sum(c[0] for c in self._counts.values()), sum(c[1] for c in self._counts.values())

    def first_attempt(self, now: float) -> None:
        self._slot(now)[0] += 1

    def try_retry(self, now: float) -> bool:
        """Spend one retry if the budget has room."""
        here = self._slot(now)
        firsts, retries = self._totals()
        if retries + 1 > self.ratio * firsts + self.floor:
            return False
        here[1] += 1
        return True

    def state(self, now: float) -> dict[str, float]:
        self._slot(now)
        firsts, retries = self._totals()
        return {"window_s": self.window_s, "first_attempts": firsts, "retries": retries, "ratio": self.ratio}


@dataclass
class Circuit:
    """closed -> open after `failures` in a row -> (after open_s) half_open: one trial -> closed or open."""

    failures: int = 5
    open_s: float = 30.0
    state: str = "closed"
    consecutive: int = 0
    opened_at: float = 0.0
    trial_in_flight: bool = False

    def allow(self, now: float) -> float | None:
        """None: go ahead. Otherwise the seconds until a call may be tried."""
        if self.state == "closed":
            return None
        if self.state == "open":
            left = self.opened_at + self.open_s - now
            if left > 0:
                return left
            self.state = "half_open"
        if self.trial_in_flight:
            return 1.0  # one trial at a time; it answers within the timeouts
        self.trial_in_flight = True
        return None

    def release(self) -> None:
        """A call that ended in neither success nor failure (cancelled): let the next one be the trial."""
        self.trial_in_flight = False

    def success(self) -> None:
        self.state, self.consecutive, self.trial_in_flight = "closed", 0, False

    def failure(self, now: float) -> None:
        self.consecutive += 1
        if self.failures and (self.state == "half_open" or self.consecutive >= self.failures):
            self.state, self.opened_at, self.trial_in_flight = "open", now, False


@dataclass
class Health:
    """One provider's retry budget, circuit and retry counts (for /-/status and metrics)."""

    budget: RetryBudget
    circuit: Circuit
    retries: dict[str, int] = field(default_factory=dict)  # reason -> count since start

    def status(self, now: float) -> dict[str, object]:
        c = self.circuit
        return {
            "circuit": c.state,
            "consecutive_failures": c.consecutive,
            "retry_budget": self.budget.state(now),
            "retries": dict(self.retries),
        }
