"""`picometer report`: spend, requests, tokens and latency from the rollups, as a table for people."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, tzinfo
from typing import Any

from picometer.config import WorkflowConfig
from picometer.local_time import hour_range, period_bounds, period_key, period_start
from picometer.metering import histogram
from picometer.metering.budget import Cap, cap_status, to_pico, usd
from picometer.numbers import count, money
from picometer.store.rollups import Rollups, totals
from picometer.watch import slo


def build(
    rollups: Rollups,
    period: str,
    by: str,
    now: datetime,
    zone: tzinfo,
    caps: Iterable[Cap] = (),
    workflows: Mapping[str, WorkflowConfig] | None = None,
) -> dict[str, Any]:
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
        "budgets": budgets(rollups, caps, now, zone),
        "objectives": objectives(rollups, workflows or {}, now),
    }


def objectives(
    rollups: Rollups,
    workflows: Mapping[str, WorkflowConfig],
    now: datetime,
    burns: Callable[[str], Iterable[slo.Burn]] = lambda name: (),
    rows: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Each configured workflow's objectives over the rolling 28 days (this hour included); `rows` from
    objective_rows when they were read already (on a worker thread)."""
    if not workflows:
        return []
    if rows is None:
        rows = objective_rows(rollups, now)
    return [
        slo.objective(
            name, w.slo_target, w.slo_latency_s, slo.events_from_rollup(rows.get(name), w.slo_latency_s), burns(name)
        )
        for name, w in sorted(workflows.items())
    ]


def objective_rows(rollups: Rollups, now: datetime) -> dict[str, dict[str, Any]]:
    """Each workflow's rollup summary over the objectives' 28 days: the SQLite part of the objectives."""
    end = int(now.timestamp()) // 3600 + 1
    return {r["key"]: r for r in rollups.summary(end - slo.WINDOW_DAYS * 24, end, "workflow")}


def budget_words(left: float) -> str:
    if left >= 0:
        return f"{left:.0%} of the error budget left"
    return f"error budget overspent ({1 - left:.0%} used)"


def render_objectives(items: list[dict[str, Any]]) -> list[str]:
    lines = []
    for o in items:
        for sli in ("success", "latency"):
            if sli not in o:
                continue
            s = o[sli]
            goal = "succeed" if sli == "success" else f"within {o['latency_s']:g} s"
            good = "-" if s["good_ratio"] is None else f"{s['good_ratio']:.3%}"
            burning = f", BURNING ({', '.join(s['burning'])})" if s["burning"] else ""
            lines.append(
                f"  {o['workflow'][:23]:<24}{o['target']:.2%} {goal}: {good} of {s['events']} calls, "
                f"{budget_words(s['budget_left'])}{burning}"
            )
    return lines


def budgets(rollups: Rollups, caps: Iterable[Cap], now: datetime, zone: tzinfo) -> list[dict[str, Any]]:
    """Each cap's spend this period from the durable records, with the last hour's pace."""
    out = []
    for cap in caps:
        if cap.limit:
            key = period_key(cap.period, now, zone)
            spent = to_pico(rollups.spend_since(period_start(key, zone), cap.workflow))
            pace = to_pico(rollups.pace(now, cap.workflow))
            out.append(cap_status(cap, key, spent, 0, pace, now, zone))
    return out


def render_budgets(caps: list[dict[str, Any]]) -> list[str]:
    lines = []
    for c in caps:
        used = f"{c['used']:.0%}" if c["used"] is not None else "-"
        lines.append(
            f"  {c['scope'] + '/' + c['period']:<30} {usd(to_pico(c['spent_usd']))} of {usd(to_pico(c['limit_usd']))}"
            f" ({used}), "
            f"{c['forecast']}; resets {c['resets_at']}"
        )
    return lines


def _with_percentiles(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if k != "bins"}
    out["p50_ms"] = histogram.percentile(row["bins"], 0.50)
    out["p95_ms"] = histogram.percentile(row["bins"], 0.95)
    return out


def render(report: dict[str, Any]) -> str:
    by = report["by"]
    total = report["total"]
    # "saved" only when a cache answered: the usual table stays as it was, and cost, p50, p95 stay the last three
    saved = bool(total["cache_hits"])
    wide = 12 if saved else 0
    head = (
        f"{by:<24}{'requests':>9}{'ok':>8}{'errors':>7}{'blocked':>8}{'in tok':>11}{'cached':>10}"
        f"{'out tok':>10}{'saved' if saved else '':>{wide}}{'cost':>12}{'p50 ms':>9}{'p95 ms':>9}"
    )
    lines = [f"{report['period']}: {report['from']} to {report['to']}", head, "-" * len(head)]
    for row in [*report["rows"], total]:
        if row is total:
            lines.append("-" * len(head))
        name = str(row["key"]) or "-"
        lines.append(
            f"{name[:23]:<24}{count(row['requests']):>9}{count(row['ok']):>8}{count(row['errors']):>7}"
            f"{count(row['blocked']):>8}{count(row['input_tokens']):>11}{count(row['cached_input_tokens']):>10}"
            f"{count(row['output_tokens']):>10}{money(row['cost_saved_usd']) if saved else '':>{wide}}"
            f"{money(row['cost_usd']):>12}{_ms(row['p50_ms']):>9}{_ms(row['p95_ms']):>9}"
        )
    if total["unpriced"]:
        lines.append(f"({total['unpriced']:.0f} calls to unpriced models are not in the cost)")
    lines += substitutes(report["rows"], total)
    lines.append(f"latency percentiles from a log-scale histogram: within {histogram.RELATIVE_ERROR:.1%}")
    if report["budgets"]:
        lines += ["", "budgets:", *render_budgets(report["budgets"])]
    if report["objectives"]:
        lines += ["", f"objectives (last {slo.WINDOW_DAYS} days):", *render_objectives(report["objectives"])]
    return "\n".join(lines)


def substitutes(rows: list[dict[str, Any]], total: Mapping[str, Any]) -> list[str]:
    """A line each for the answers that stood in for the one asked, when there were any: what the cache saved,
    how many calls fell back to another provider or were downgraded by a cap, and in which rows."""
    lines = []
    if total["cache_hits"]:
        hits = total["cache_hits"]
        share = hits / total["requests"]
        lines.append(f"cache saved {money(total['cost_saved_usd'])} over {_calls(hits, 'hit')} ({share:.0%} of calls)")
    if total["fallbacks"]:
        lines.append(
            f"fallbacks: {_calls(total['fallbacks'])} answered by another provider after the one asked failed"
            + _where(rows, "fallbacks")
        )
    if total["downgrades"]:
        lines.append(
            f"downgrades: {_calls(total['downgrades'])} sent to a cheaper model by a budget cap"
            + _where(rows, "downgrades")
        )
    return lines


def _calls(n: float, noun: str = "call") -> str:
    return f"{count(n)} {noun}" + ("" if n == 1 else "s")


def _where(rows: list[dict[str, Any]], column: str, most: int = 5) -> str:
    """The rows a count comes from, largest first, e.g. " (digest 3, bot 1)"; the first few, then an ellipsis."""
    hit = sorted(((r[column], str(r["key"]) or "-") for r in rows if r[column]), key=lambda t: (-t[0], t[1]))
    named = ", ".join(f"{name[:23]} {count(n)}" for n, name in hit[:most])
    return f" ({named}{', ...' if len(hit) > most else ''})" if hit else ""


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"
