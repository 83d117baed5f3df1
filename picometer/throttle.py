"""Log lines that cannot flood: one line per reason per interval, then a count of what was held back."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

INTERVAL_S = 60.0


class Throttled:
    """Wraps a structlog logger. Reasons are the event strings of the code, never client input, so the
    table stays small; what is held back in an interval is counted into the next line of that reason."""

    def __init__(self, logger: Any, interval_s: float = INTERVAL_S, clock: Callable[[], float] = time.monotonic):
        self._log, self._interval, self._clock = logger, interval_s, clock
        self._seen: dict[str, list[float]] = {}  # reason -> [last written, held back since]

    def _write(self, level: str, reason: str, fields: dict[str, Any]) -> None:
        now = self._clock()
        state = self._seen.get(reason)
        if state is not None and now - state[0] < self._interval:
            state[1] += 1
            return
        held = int(state[1]) if state is not None else 0
        self._seen[reason] = [now, 0]
        if held:
            fields = {**fields, "held_back": held, "in_s": round(self._interval)}
        getattr(self._log, level)(reason, **fields)

    def warning(self, reason: str, **fields: Any) -> None:
        self._write("warning", reason, fields)

    def error(self, reason: str, **fields: Any) -> None:
        self._write("error", reason, fields)

    def exception(self, reason: str, **fields: Any) -> None:
        self._write("exception", reason, fields)
