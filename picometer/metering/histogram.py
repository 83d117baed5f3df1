"""A fixed log-scale latency histogram: percentiles for any window without keeping raw latencies.

Bin i covers [BASE * R**i, BASE * R**(i+1)) milliseconds with R = 2**(1/8). A percentile is reported
as the bin's geometric midpoint, so its relative error is at most sqrt(R) - 1 = 4.4%
(plus the usual rank granularity of any percentile over a finite sample).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

BASE_MS = 1.0
RATIO = 2 ** (1 / 8)
MAX_BIN = 200  # 1 ms * R**200 is about 33 000 s: longer calls share the last bin
RELATIVE_ERROR = math.sqrt(RATIO) - 1
_LOG_R = math.log(RATIO)


def bin_of(latency_ms: float) -> int:
    if latency_ms < BASE_MS:
        return 0
    return min(int(math.log(latency_ms / BASE_MS) / _LOG_R), MAX_BIN)


def bin_value(index: int) -> float:
    """The representative latency of a bin: its geometric midpoint (bin 0 also holds everything below 1 ms)."""
    return float(BASE_MS * RATIO ** (index + 0.5))


def percentile(bins: Mapping[int, int], q: float) -> float | None:
    """The q-quantile (0..1) of the latencies counted in `bins`, nearest-rank; None when empty."""
    total = sum(bins.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for index in sorted(bins):
        seen += bins[index]
        if seen >= rank:
            return bin_value(index)
    return bin_value(max(bins))


def merge(many: Iterable[Mapping[int, int]]) -> dict[int, int]:
    out: dict[int, int] = {}
    for bins in many:
        for index, count in bins.items():
            out[index] = out.get(index, 0) + count
    return out
