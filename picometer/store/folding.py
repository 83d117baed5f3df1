"""What one record adds to the rollups, counted in memory until a flush writes it: pure arithmetic, the same
for live traffic and replay."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from picometer.local_time import quarter_of
from picometer.metering import histogram
from picometer.metering.tokens import ROLLUP_FIELDS
from picometer.record import RECORD_FIELDS, Record
from picometer.store.usagelog import Position

# Order of the summed columns, in memory and in the table (the last four came with the cache and fallbacks).
COUNTERS = (
    "requests", "ok", "errors", "blocked", "retries", *ROLLUP_FIELDS, "cost_usd", "unpriced", "latency_ms_sum",
    "cache_hits", "cost_saved_usd", "fallbacks", "downgrades",
)  # fmt: skip
SUBSTITUTES = COUNTERS.index("cache_hits")  # where the answers that stood in for another are counted
STATUS_COLUMN = {"ok": 1, "error": 2, "blocked": 3}
DIMENSIONS = ("workflow", "env", "provider", "model")

SeriesKey = tuple[str, str, str, str]


def record_from_dict(data: Mapping[str, Any]) -> Record:
    return Record(**{k: data[k] for k in RECORD_FIELDS if k in data})


@dataclass
class Batch:
    """What has been folded in memory but not yet written."""

    counters: dict[tuple[int, SeriesKey], list[float]]
    bins: dict[tuple[int, SeriesKey, int], int]
    spend: dict[tuple[int, str], float]
    position: Position | None

    def merge(self, newer: Batch) -> None:
        """Add a later batch into this one."""
        for key, row in newer.counters.items():
            mine = self.counters.setdefault(key, [0.0] * len(COUNTERS))
            for i, v in enumerate(row):
                mine[i] += v
        for b, n in newer.bins.items():
            self.bins[b] = self.bins.get(b, 0) + n
        for q, cost in newer.spend.items():
            self.spend[q] = self.spend.get(q, 0.0) + cost
        if newer.position is not None:
            self.advance(newer.position)

    def advance(self, position: Position) -> None:
        """The log position folded up to: only ever forward (a heal's replay runs beside new records)."""
        if self.position is None or position > self.position:
            self.position = position


def new_batch() -> Batch:
    return Batch({}, {}, {}, None)


def fold(batch: Batch, rec: Record, moment: datetime, key: SeriesKey) -> None:
    """Add one record (made at `moment`, counted under series `key`) to a batch: pure arithmetic, the same
    for live traffic and replay."""
    hour = int(moment.timestamp()) // 3600
    row = batch.counters.get((hour, key))
    if row is None:
        row = batch.counters[(hour, key)] = [0.0] * len(COUNTERS)
    row[0] += 1
    row[STATUS_COLUMN.get(rec.status, 2)] += 1
    row[4] += max(rec.attempts - 1, 0)
    for i, field in enumerate(ROLLUP_FIELDS, start=5):
        row[i] += getattr(rec, field)
    if rec.cost_usd is None:
        row[11] += 1
    else:
        row[10] += rec.cost_usd
        if rec.cost_usd:
            q = (quarter_of(moment), key[0])  # the workflow, as folded
            batch.spend[q] = batch.spend.get(q, 0.0) + rec.cost_usd
    row[12] += rec.latency_ms
    # A log line written before these fields existed reads as the defaults: no hit, nothing saved.
    row[SUBSTITUTES] += 1 if rec.cache_hit else 0
    row[SUBSTITUTES + 1] += rec.cost_saved_usd or 0.0
    row[SUBSTITUTES + 2] += 1 if rec.fallback_from else 0
    row[SUBSTITUTES + 3] += 1 if rec.downgraded_from else 0
    b = (hour, key, histogram.bin_of(rec.latency_ms))
    batch.bins[b] = batch.bins.get(b, 0) + 1
