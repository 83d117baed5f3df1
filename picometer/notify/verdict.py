"""What a service's answer means for the message it was sent: taken; wait as long as the service asked (429, or
503 with Retry-After); retry later with backoff (5xx, timeouts); park the channel (its address or token is
refused: only a fixed config helps); or drop this one message (the service refuses it as it is)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime

BACKOFF_BASE_S = 1.0
BACKOFF_MAX_S = 60.0  # an unreachable service is tried at least once a minute
WAIT_MAX_S = 3600.0  # a Retry-After longer than this is taken as this (a receiver cannot hold alerts for days)
PARK = frozenset({401, 403, 404, 405, 410})  # bad token, unknown topic or webhook, wrong URL


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: str  # "sent" | "wait" | "retry" | "park" | "drop"
    wait_s: float = 0.0  # for "wait": what the service asked for


def judge(status: int, headers: Mapping[str, str], body: bytes, now: datetime) -> Verdict:
    if 200 <= status < 300:
        return Verdict("sent")
    if status == 429 or status >= 500 or status == 408:
        wait = retry_after_s(headers, body, now)
        return Verdict("wait", wait) if wait is not None else Verdict("retry")
    if 300 <= status < 400 or status in PARK:
        return Verdict("park")  # a redirect too: the configured URL is not the one to post to
    return Verdict("drop")


def retry_after_s(headers: Mapping[str, str], body: bytes, now: datetime) -> float | None:
    """Seconds the service asked to wait: `Retry-After` (seconds or an HTTP date) or Discord's `retry_after` in the
    JSON body (seconds, fractional), the longer of the two, at most WAIT_MAX_S; None when it asked nothing."""
    asked: list[float] = []
    value = (headers.get("retry-after") or "").strip()
    if value:
        try:
            asked.append(float(value))
        except ValueError:
            with contextlib.suppress(TypeError, ValueError):  # unreadable: backoff decides
                asked.append((parsedate_to_datetime(value) - now).total_seconds())
    try:
        data = json.loads(body) if body[:1] == b"{" else None
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("retry_after"), int | float):
        asked.append(float(data["retry_after"]))
    finite = [s for s in asked if s == s and s != float("inf")]  # NaN and infinity are no answer
    return min(max(max(finite), 0.0), WAIT_MAX_S) if finite else None


def backoff_s(failures: int, rand: float) -> float:
    """The wait after `failures` failed tries in a row: exponential, bounded, with jitter (rand in [0, 1))."""
    step = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2.0 ** min(failures, 16))
    return step * (0.5 + rand / 2)  # never less than half a step: no hot loop
