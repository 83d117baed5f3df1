"""`picometer report`: spend, requests, tokens and latency from the rollups, as a table for people."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any

from picometer.metering import histogram
from picometer.reports.periods import hour_range, period_bounds
from picometer.store.rollups import Rollups, totals


def build(rollups: Rollups, period: str, by: str, now: datetime, zone: tzinfo) -> dict[str, Any]:
    start, end = period_bounds(period, now, zone)
    rows = rollups.summary(*hour_range(start, end), by=by)
    all_bins = histogram.merge(r["bins"] for r in rows)
    return {
        "period": period,
        "by": by,
        "from": start.astimezone(zone).isoformat(timespec="minutes"),
        "to": end.astimezone(zone).isoformat(timespec="minutes"),
        "rows": [_with_percentiles(r) for r in rows],
        "total": _with_percentiles({**totals(rows), "key": "total", "bins": all_bins}),
    }


def _with_percentiles(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if k != "bins"}
    out["p50_ms"] = histogram.percentile(row["bins"], 0.50)
    out["p95_ms"] = histogram.percentile(row["bins"], 0.95)
    return out


def render(report: dict[str, Any]) -> str:
    by = report["by"]
    head = (
        f"{by:<24}{'requests':>9}{'ok':>8}{'errors':>7}{'blocked':>8}{'in tok':>11}{'cached':>10}"
        f"{'out tok':>10}{'cost $':>12}{'p50 ms':>9}{'p95 ms':>9}"
    )
    lines = [f"{report['period']}: {report['from']} to {report['to']}", head, "-" * len(head)]
    for row in [*report["rows"], report["total"]]:
        if row is report["total"]:
            lines.append("-" * len(head))
        name = str(row["key"]) or "-"
        lines.append(
            f"{name[:23]:<24}{row['requests']:>9.0f}{row['ok']:>8.0f}{row['errors']:>7.0f}{row['blocked']:>8.0f}"
            f"{row['input_tokens']:>11.0f}{row['cached_input_tokens']:>10.0f}{row['output_tokens']:>10.0f}"
            f"{row['cost_usd']:>12.4f}{_ms(row['p50_ms']):>9}{_ms(row['p95_ms']):>9}"
        )
    if report["total"]["unpriced"]:
        lines.append(f"({report['total']['unpriced']:.0f} calls to unpriced models are not in the cost)")
    lines.append(f"latency percentiles from a log-scale histogram: within {histogram.RELATIVE_ERROR:.1%}")
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"
