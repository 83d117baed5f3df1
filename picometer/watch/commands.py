"""The bot's answers: /status, /spend, /top, /budget, /canary, /pause, /resume, /mute, /unmute, /help.

Answers are Telegram HTML with every user-supplied text escaped, split under Telegram's length
limit. They read and change the same state the CLI does (rollups, budgets, pauses)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import tzinfo
from typing import Any

import structlog

from picometer import ops
from picometer.alert import Kind
from picometer.duration import format_duration, parse_duration
from picometer.gateway.tags import clean_tag
from picometer.local_time import REPORT_PERIODS
from picometer.metering.budget import to_pico, usd
from picometer.numbers import count, money
from picometer.reports import report
from picometer.reports.status_text import status_lines
from picometer.watch.alerts import esc
from picometer.watch.canary import table

log = structlog.get_logger("picometer.telegram")

LIMIT = 4000  # Telegram takes 4096 characters (UTF-16 units) per message; keep a margin
STALE_S = 600  # a command older than this (sent while picometer was down) is not carried out

HELP = """<b>picometer</b> answers:
/status: spend, budgets, pauses, providers, recent alerts
/spend [today|week|month|7d|30d]: spend by workflow, and what the cache saved
/top: today's most expensive workflows and models
/budget: every cap, what is used and when it resets
/canary: run the canary probes now
/pause WORKFLOW [2h] [force]: refuse its calls (until resumed, or for a while)
/resume WORKFLOW
/mute KIND [24h]: stop telling this kind of alert (kinds: {kinds})
/unmute KIND
/help: this list"""


def split(text: str, limit: int = LIMIT) -> list[str]:
    """Pieces under `limit` UTF-16 units, cut between lines (or, for one huge line, between characters)."""
    pieces: list[str] = []
    current = ""
    for line in text.split("\n"):
        while _units(line) > limit:
            cut = _fit(line, limit)
            pieces += [current] if current else []
            current = ""
            pieces.append(line[:cut])
            line = line[cut:]
        candidate = f"{current}\n{line}" if current else line
        if _units(candidate) > limit:
            pieces.append(current)
            candidate = line
        current = candidate
    if current or not pieces:
        pieces.append(current)
    return pieces


def _units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _fit(line: str, limit: int) -> int:
    """The longest prefix under the limit that does not cut an HTML entity such as &amp;."""
    cut = limit
    while _units(line[:cut]) > limit:
        cut -= 1
    amp = line.rfind("&", max(cut - 8, 0), cut)
    if amp != -1 and ";" not in line[amp:cut]:
        cut = amp
    return cut


class Commands:
    def __init__(self, operations: ops.Operations) -> None:
        self.ops = operations

    async def answer(self, text: str, by: str) -> list[str]:
        """The reply to one command message, in pieces ready to send."""
        word, *args = text.split() or [""]
        return await self.run(word.lstrip("/").split("@", 1)[0].lower(), args, by)

    async def run(self, name: str, args: list[str], by: str) -> list[str]:
        handler = {
            "status": self.status,
            "spend": self.spend,
            "top": self.top,
            "budget": self.budget,
            "canary": self.canary,
            "pause": self.pause,
            "resume": self.resume,
            "mute": self.mute,
            "unmute": self.unmute,
        }.get(name)
        if handler is None:
            return split(HELP.format(kinds=", ".join(Kind)))
        try:
            reply = await handler(args, by)
        except ValueError as e:
            reply = f"⚠️ {esc(str(e))}"
        return split(reply)

    async def status(self, args: list[str], by: str) -> str:
        """The same lines as `picometer status`, from the same /-/status answer."""
        return "\n".join(esc(line) for line in status_lines(await self.ops.full_status()))

    async def spend(self, args: list[str], by: str) -> str:
        period = args[0].lower() if args else "today"
        if period not in REPORT_PERIODS:
            raise ValueError(f"unknown period {period!r}: use one of {', '.join(REPORT_PERIODS)}")
        rep = await self._report(period, "workflow")
        lines = [f"<b>Spend {period}</b> ({esc(rep['from'])} to {esc(rep['to'])})"]
        for row in rep["rows"]:
            lines.append(f"{esc(str(row['key']))}: {money(row['cost_usd'])}, {count(row['requests'])} calls")
        total = rep["total"]
        lines.append(f"<b>Total</b>: {money(total['cost_usd'])}, {count(total['requests'])} calls")
        lines += [esc(line) for line in report.substitutes(rep["rows"], total)]  # what the cache saved, fallbacks
        return "\n".join(lines)

    async def top(self, args: list[str], by: str) -> str:
        lines = ["<b>Today's top spenders</b>"]
        for dimension in ("workflow", "model"):
            rep = await self._report("today", dimension)
            lines.append(f"By {dimension}:")
            for row in rep["rows"][:5]:
                lines.append(f"  {esc(str(row['key']) or '-')}: {money(row['cost_usd'])} ({count(row['requests'])})")
        return "\n".join(lines)

    async def budget(self, args: list[str], by: str) -> str:
        d = self.ops
        caps = d.budgets(await asyncio.to_thread(d.paces))
        if not caps:
            return "No budget caps are set ([budgets] and [workflows.NAME] daily_usd / monthly_usd)."
        return "\n".join(["<b>Budgets</b>", *(_cap_line(c) for c in caps)])

    async def canary(self, args: list[str], by: str) -> str:
        if not self.ops.config.canary.probes:
            return "No canary probes are configured (add [[canary.probes]] to the config)."
        data = await self.ops.run_canary()
        head = "✅ <b>Canary: all pass</b>" if data["ok"] else "❌ <b>Canary: failing</b>"
        return f"{head}\n<pre>{esc(table(data['results']))}</pre>"

    async def pause(self, args: list[str], by: str) -> str:
        workflow = clean_tag(args[0]) if args else None
        if not workflow:
            raise ValueError("which workflow? /pause WORKFLOW [2h]")
        force = args[-1].lower() == "force"
        span = [a for a in args[1:] if a.lower() != "force"]
        now = self.ops.clock.now()
        until = now + parse_duration(span[0]) if span else None
        typo = None if force else ops.unknown(workflow, self.ops.known_workflows())
        if typo is not None:
            return f"⚠️ not paused: {esc(typo)} (/pause {esc(workflow)} force)"
        return "⏸ " + _told(ops.pause(self.ops.state, workflow, until, by, now), self.ops.zone)

    async def resume(self, args: list[str], by: str) -> str:
        workflow = clean_tag(args[0]) if args else None
        if not workflow:
            raise ValueError("which workflow? /resume WORKFLOW")
        return "▶️ " + _told(ops.resume(self.ops.state, workflow, by, self.ops.clock.now()), self.ops.zone)

    async def mute(self, args: list[str], by: str) -> str:
        kind, scope = _kind(args, "/mute KIND [24h]")
        span = parse_duration(args[1]) if len(args) > 1 else parse_duration("24h")
        self.ops.mute(kind, scope, span)
        where = f" for {esc(scope)}" if scope else ""
        return f"🔕 {kind} alerts{where} muted for {format_duration(span)}; critical ones too, so mind the budget caps."

    async def unmute(self, args: list[str], by: str) -> str:
        kind, _ = _kind(args, "/unmute KIND")
        return f"🔔 {kind} alerts unmuted." if self.ops.outbox.unmute(kind) else f"{kind} alerts were not muted."

    async def _report(self, period: str, by: str) -> dict[str, Any]:
        d = self.ops
        await asyncio.to_thread(d.rollups.flush)  # include the last seconds of calls
        return report.build(d.rollups, period, by, d.clock.now(), d.zone)


def _told(done: ops.Switched, zone: tzinfo) -> str:
    """The same words `picometer pause` and `resume` print, and the warning when the state file did not keep it."""
    return esc(done.sentence(zone)) + ("" if done.warning is None else f"\n⚠️ {esc(done.warning)}")


def _kind(args: list[str], usage: str) -> tuple[str, str]:
    """KIND or KIND@workflow:NAME (what a button mutes)."""
    if not args:
        raise ValueError(f"which kind? {usage}; kinds: {', '.join(Kind)}")
    kind, _, scope = args[0].partition("@")
    if kind not in set(Kind):
        raise ValueError(f"{kind!r} is not an alert kind; kinds: {', '.join(Kind)}")
    return kind, scope


def _cap_line(cap: Mapping[str, Any]) -> str:
    pct = f"{cap['used']:.0%}" if cap["used"] is not None else "-"
    return (
        f"💰 {esc(cap['scope'])}/{cap['period']}: {usd(to_pico(cap['spent_usd']))} of "
        f"{usd(to_pico(cap['limit_usd']))} ({pct}), {esc(cap['forecast'])}"
    )
