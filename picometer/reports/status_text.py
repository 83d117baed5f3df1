"""`picometer status` and the bot's /status in one wording: plain lines from the /-/status answer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from picometer.numbers import money
from picometer.reports.report import render_budgets, render_objectives


def status_lines(data: Mapping[str, Any]) -> list[str]:
    """The daemon's state, a line a fact, from what GET /-/status answers (the same numbers wherever shown)."""
    by = data["requests_by_status"]
    spend = data["spend_usd"]
    lines = [
        f"picometer {data['version']} up {data['uptime_s']:.0f}s on {data['listen']}",
        f"requests {data['requests']} (ok {by.get('ok', 0)}, error {by.get('error', 0)}, "
        f"blocked {by.get('blocked', 0)}), in flight {data['in_flight']}, "
        f"spent {money(data['cost_usd_since_start'])} since start",
        f"spend today {money(spend['today'])}, this month {money(spend['month'])}",
    ]
    if data["budgets"]:
        lines += ["budgets:", *render_budgets(data["budgets"])]
    for p in data["pauses"]:
        lines.append(f"PAUSED {p['workflow']} " + (f"until {p['until']}" if p["until"] else "until resumed"))
    if data.get("objectives"):
        lines += ["objectives (last 28 days):", *render_objectives(data["objectives"])]
    for name, h in data.get("upstream", {}).items():
        retries = ", ".join(f"{reason} {n}" for reason, n in sorted(h["retries"].items())) or "none"
        circuit = "" if h["circuit"] == "closed" else f"CIRCUIT {h['circuit'].upper().replace('_', '-')}, "
        lines.append(f"provider {name}: {circuit}{h['consecutive_failures']} failures in a row, retries: {retries}")
    for probe in data.get("canary", {}).get("probes", []):
        last = probe["last"]
        seen = f"{last['outcome'].upper()} at {last['at']}: {last['detail']}" if last else "not run yet"
        lines.append(f"canary {probe['probe']}: {seen}")
    channels = data.get("channels") or {}
    if fine := [n for n, c in channels.items() if not (c["queued"] or c["failures_in_a_row"] or c["parked"])]:
        lines.append(f"alert channels delivering: {', '.join(fine)}")
    for name, c in channels.items():
        waiting = f"{c['queued']} waiting"
        if c["parked"]:
            lines.append(f"alert channel {name}: its address or token was REFUSED (fix it in [notify], then restart "
                         f"picometer), {waiting}")  # fmt: skip
        elif c["failures_in_a_row"]:
            lines.append(f"alert channel {name}: {c['failures_in_a_row']} failures in a row, {waiting}")
        elif c["queued"]:
            lines.append(f"alert channel {name}: {waiting} (held for quiet hours, or being sent)")
    for a in data.get("alerts", [])[-5:]:
        lines.append(f"alert {a['kind']} ({a['severity']}) at {a['at']}: {a['message']}")
    reload = data.get("config", {}).get("last_reload")
    if reload and not reload["ok"]:
        lines.append(f"CONFIG RELOAD FAILED at {reload['at']}: {reload['error']}")
    elif reload and reload["restart_needed"]:
        lines.append(f"restart needed for: {', '.join(reload['restart_needed'])}")
    return lines
