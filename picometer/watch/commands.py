"""The bot's answers: /status, /spend, /top, /budget, /canary, /pause, /resume, /mute, /unmute, /help.

Answers are Telegram HTML with every user-supplied text escaped, split under Telegram's length
limit. They read and change the same state the CLI does (rollups, budgets, pauses)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import structlog

from picometer import ops
from picometer.alert import Kind
from picometer.duration import format_duration, parse_duration
from picometer.gateway.tags import clean_tag
from picometer.metering.budget import to_pico, usd
from picometer.reports import report
from picometer.reports.periods import PERIODS
from picometer.watch.alerts import esc
from picometer.watch.canary import table

log = structlog.get_logger("picometer.telegram")

LIMIT = 4000  # Telegram takes 4096 characters (UTF-16 units) per message; keep a margin
STALE_S = 600  # a command older than this (sent while picometer was down) is not carried out

HELP = """<b>picometer</b> answers:
/status: spend, budgets, pauses, providers, recent alerts
/spend [today|week|month]: spend by workflow
/top: today's most expensive workflows and models
/budget: every cap, what is used and when it resets
/canary: run the canary probes now
/pause WORKFLOW [2h]: refuse its calls (until resumed, or for a while)
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
        d = self.ops
        now = d.clock.now()
        lines = [f"<b>picometer</b>: {esc(d.status_line())}"]
        budgets, objectives = await d.summaries()
        for cap in budgets:
            lines.append(_cap_line(cap))
        for p in d.state.pauses(now):
            until = f"for {format_duration(p.until - now)}" if p.until else "until resumed"
            lines.append(f"⏸ {esc(p.workflow)} paused {until} (by {esc(p.by)})")
        for o in objectives:
            lines.append(_objective_line(o))
        for name, result in d.canary.last.items():
            mark = "✅" if result.ok else "❌"
            lines.append(f"{mark} canary {esc(name)}: {esc(result.outcome)}, {esc(result.detail)}")
        for name, health in d.gateway.upstream.status().items():
            if health["circuit"] != "closed":
                lines.append(f"🔌 {esc(name)}: circuit {health['circuit']}")
        recent = list(d.alerts)[-3:]
        if recent:
            lines.append("Recent alerts:")
            lines += [f"• {a.at.astimezone(d.zone):%H:%M} {esc(str(a.kind))} {esc(a.scope)}" for a in recent]
        return "\n".join(lines)

    async def spend(self, args: list[str], by: str) -> str:
        period = args[0].lower() if args else "today"
        if period not in PERIODS:
            raise ValueError(f"unknown period {period!r}: use one of {', '.join(PERIODS)}")
        rep = await self._report(period, "workflow")
        lines = [f"<b>Spend {period}</b> ({esc(rep['from'])} to {esc(rep['to'])})"]
        for row in rep["rows"]:
            lines.append(f"{esc(str(row['key']))}: ${row['cost_usd']:.4f}, {row['requests']:.0f} calls")
        lines.append(f"<b>Total</b>: ${rep['total']['cost_usd']:.4f}, {rep['total']['requests']:.0f} calls")
        return "\n".join(lines)

    async def top(self, args: list[str], by: str) -> str:
        lines = ["<b>Today's top spenders</b>"]
        for dimension in ("workflow", "model"):
            rep = await self._report("today", dimension)
            lines.append(f"By {dimension}:")
            for row in rep["rows"][:5]:
                lines.append(f"  {esc(str(row['key']) or '-')}: ${row['cost_usd']:.4f} ({row['requests']:.0f})")
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
        now = self.ops.clock.now()
        until = now + parse_duration(args[1]) if len(args) > 1 else None
        done = ops.pause(self.ops.state, workflow, until, by, now)
        span = f"for {format_duration(until - now)}" if until else "until /resume"
        return f"⏸ <b>{esc(workflow)}</b> is paused {span}: its calls get 429 workflow_paused.{_unsaved(done)}"

    async def resume(self, args: list[str], by: str) -> str:
        workflow = clean_tag(args[0]) if args else None
        if not workflow:
            raise ValueError("which workflow? /resume WORKFLOW")
        done = ops.resume(self.ops.state, workflow, by, self.ops.clock.now())
        name = esc(workflow)
        return (f"▶️ <b>{name}</b> resumed." if done.was_paused else f"{name} was not paused.") + _unsaved(done)

    async def mute(self, args: list[str], by: str) -> str:
        kind, scope = _kind(args, "/mute KIND [24h]")
        span = parse_duration(args[1]) if len(args) > 1 else parse_duration("24h")
        until = self.ops.clock.now() + span
        self.ops.outbox.mute(kind, scope, until)
        where = f" for {esc(scope)}" if scope else ""
        return f"🔕 {kind} alerts{where} muted for {format_duration(span)}; critical ones too, so mind the budget caps."

    async def unmute(self, args: list[str], by: str) -> str:
        kind, _ = _kind(args, "/unmute KIND")
        return f"🔔 {kind} alerts unmuted." if self.ops.outbox.unmute(kind) else f"{kind} alerts were not muted."

    async def _report(self, period: str, by: str) -> dict[str, Any]:
        d = self.ops
        await asyncio.to_thread(d.rollups.flush)  # include the last seconds of calls
        return report.build(d.rollups, period, by, d.clock.now(), d.zone)


def _unsaved(done: ops.Switched) -> str:
    return "" if done.warning is None else f"\n⚠️ {esc(done.warning)}"


def _kind(args: list[str], usage: str) -> tuple[str, str]:
    """KIND or KIND@workflow:NAME (what a button mutes)."""
    if not args:
        raise ValueError(f"which kind? {usage}; kinds: {', '.join(Kind)}")
    kind, _, scope = args[0].partition("@")
    if kind not in set(Kind):
        raise ValueError(f"{kind!r} is not an alert kind; kinds: {', '.join(Kind)}")
    return kind, scope


def _objective_line(o: Mapping[str, Any]) -> str:
    parts = []
    for sli in ("success", "latency"):
        if sli in o:
            s = o[sli]
            good = "-" if s["good_ratio"] is None else f"{s['good_ratio']:.2%}"
            fire = " 🔥" if s["burning"] else ""
            parts.append(f"{sli} {good}, {report.budget_words(s['budget_left'])}{fire}")
    return f"🎯 {esc(o['workflow'])} (target {o['target']:.2%}): " + "; ".join(parts)


def _cap_line(cap: Mapping[str, Any]) -> str:
    pct = f"{cap['used']:.0%}" if cap["used"] is not None else "-"
    return (
        f"💰 {esc(cap['scope'])}/{cap['period']}: {usd(to_pico(cap['spent_usd']))} of "
        f"{usd(to_pico(cap['limit_usd']))} ({pct}), {esc(cap['forecast'])}"
    )
