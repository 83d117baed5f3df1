"""The weekly CSV (CONTRACT section 6): one row per local day x workflow x env x provider x model, from the
rollups, for one ISO week in the configured time zone.

An hour of the rollups (UTC) belongs to the local day on which it starts: exact for every zone whose
offset is a whole number of hours, at DST changes too (a week then has 167 or 169 hours); in a zone
with a half-hour offset, the hour around midnight counts to the day it starts in.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

import structlog

from picometer.config import ExportConfig
from picometer.local_time import last_full_week, period_start, week_label
from picometer.metering import histogram
from picometer.numbers import money
from picometer.store.rollups import Rollups
from picometer.store.state import State

log = structlog.get_logger("picometer.export")

COLUMNS = (
    "week", "date", "workflow", "env", "provider", "model", "requests", "ok", "errors", "blocked", "retries",
    "input_tokens", "cached_input_tokens", "output_tokens", "cost_usd", "cost_per_ok_usd", "p50_ms", "p95_ms", "p99_ms",
    # appended after the contract's columns, so a sheet or script that reads those by position keeps working
    "cache_hits", "cost_saved_usd", "fallbacks", "downgrades",
)  # fmt: skip
SUMMED = ("requests", "ok", "errors", "blocked", "retries", "input_tokens", "cached_input_tokens", "output_tokens")
SUBSTITUTED = ("cache_hits", "fallbacks", "downgrades")  # answers that stood in for the one asked, counted
DOLLARS = ("cost_usd", "cost_saved_usd")
DOLLAR_DECIMALS = 9  # a single small call costs about $0.000001: nine places keep it exact to a thousandth
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet would run such a cell as a formula


def week_rows(rollups: Rollups, monday: date, zone: tzinfo) -> list[dict[str, Any]]:
    """The week's rows, summed per local day and series, in a stable order."""
    start, end = period_start(monday, zone), period_start(monday + timedelta(days=7), zone)
    first, last = math.floor(start.timestamp() / 3600), math.ceil(end.timestamp() / 3600)
    label = week_label(monday)
    days: dict[tuple[str, str, str, str, str], dict[str, Any]] = {}
    for row in rollups.hourly(first - 1, last + 1):
        day = datetime.fromtimestamp(row["hour"] * 3600, UTC).astimezone(zone).date()
        if not monday <= day < monday + timedelta(days=7):
            continue
        key = (day.isoformat(), row["workflow"], row["env"], row["provider"], row["model"])
        out = days.get(key)
        if out is None:
            out = days[key] = {"week": label, **dict(zip(COLUMNS[1:6], key, strict=True)),
                               **dict.fromkeys(SUMMED + SUBSTITUTED, 0), **dict.fromkeys(DOLLARS, 0.0),
                               "bins": {}}  # fmt: skip
        for c in SUMMED + SUBSTITUTED:
            out[c] += int(row[c])
        for c in DOLLARS:
            out[c] += row[c]
        out["bins"] = histogram.merge((out["bins"], row["bins"]))
    return [days[k] for k in sorted(days)]


def to_csv(rows: Iterable[Mapping[str, Any]]) -> str:
    """UTF-8 text, header first, RFC 4180 quoting (names with commas, quotes or line breaks stay whole)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for row in rows:
        ok = row["ok"]
        percentiles = [histogram.percentile(row["bins"], q) for q in (0.50, 0.95, 0.99)]
        writer.writerow(
            [
                row["week"],
                row["date"],
                *(_text(row[c]) for c in ("workflow", "env", "provider", "model")),
                *(row[c] for c in SUMMED),
                _dollars(row["cost_usd"]),
                _dollars(row["cost_usd"] / ok) if ok else "",
                *("" if p is None else f"{p:.1f}" for p in percentiles),
                row["cache_hits"],
                _dollars(row["cost_saved_usd"]),
                row["fallbacks"],
                row["downgrades"],
            ]
        )
    return buffer.getvalue()


def _dollars(value: float) -> str:
    return f"{value:.{DOLLAR_DECIMALS}f}"


def _text(value: str) -> str:
    """A name as text: one that starts like a formula gets a leading apostrophe, as spreadsheets expect."""
    return "'" + value if value.startswith(FORMULA_START) else value


def summary(rows: list[dict[str, Any]], previous: list[dict[str, Any]], monday: date) -> str:
    """Two lines for the message the file goes with: the total against the week before, the top workflow; a third
    with what the cache saved, when it answered."""
    total = sum(r["cost_usd"] for r in rows)
    before = sum(r["cost_usd"] for r in previous)
    calls = sum(r["requests"] for r in rows)
    change = f"{(total - before) / before:+.0%} on the week before" if before else "no spend the week before"
    by_workflow: dict[str, float] = {}
    for r in rows:
        by_workflow[r["workflow"]] = by_workflow.get(r["workflow"], 0.0) + r["cost_usd"]
    line1 = f"Week {week_label(monday)}: ${total:,.2f} over {calls:,} calls ({change})."
    if not by_workflow:
        return line1 + "\nNo calls that week."
    top, cost = max(by_workflow.items(), key=lambda kv: (kv[1], kv[0]))
    share = f" ({cost / total:.0%})" if total else ""
    text = f"{line1}\nTop workflow: {top}, ${cost:,.2f}{share}."
    hits = sum(r["cache_hits"] for r in rows)
    if hits:
        text += f"\nThe cache saved {money(sum(r['cost_saved_usd'] for r in rows))} over {hits:,} hits."
    return text


def write_atomic(path: Path, text: str) -> None:
    """Write then rename: a reader (or a power cut) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def file_name(monday: date) -> str:
    return f"picometer-{week_label(monday)}.csv"


EXPORT_AFTER = timedelta(minutes=10)  # the weekly CSV is written on Monday at 00:10, local time
EXPORT_CATCH_UP_WEEKS = 8  # weeks missed while down that are written at the next start


def write_due_weeks(
    rollups: Rollups, state: State, cfg: ExportConfig, zone: tzinfo, now: datetime
) -> list[tuple[Path, str]]:
    """Write each finished week not written yet into [export].dir; each file with its two-line summary. Due on
    Monday 00:10 local; weeks missed while down are written at the next check."""
    due = last_full_week(now - EXPORT_AFTER, zone)
    done = state.meta("export_week")
    if not cfg.weekly or (done is not None and done >= week_label(due)):
        return []
    mondays = [due - timedelta(weeks=k) for k in reversed(range(EXPORT_CATCH_UP_WEEKS))]
    rollups.flush()
    written = []
    for monday in [due] if done is None else [m for m in mondays if week_label(m) > done]:
        rows = week_rows(rollups, monday, zone)
        if done is None and not rows:  # a first start: no file for a week before picometer ran
            state.set_meta("export_week", week_label(monday))
            continue
        path = Path(cfg.dir) / file_name(monday)
        write_atomic(path, to_csv(rows))
        state.set_meta("export_week", week_label(monday))
        log.info("weekly CSV written", path=str(path), rows=len(rows))
        previous = week_rows(rollups, monday - timedelta(weeks=1), zone)
        written.append((path, summary(rows, previous, monday)))
    return written
