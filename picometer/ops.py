"""What a person can ask of picometer or do to it, done once for every face: the HTTP admin routes, the CLI (through the
daemon, or over its state file when it is down) and the Telegram bot all call these and render the result."""

from __future__ import annotations

import asyncio
import difflib
import math
from collections import deque
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any

import structlog

from picometer.alert import Alert, Kind
from picometer.clock import Clock
from picometer.config import Config
from picometer.duration import format_duration
from picometer.local_time import period_key, period_start
from picometer.metering.budget import Budget, cap_status, to_pico, to_usd, usd
from picometer.numbers import moment
from picometer.record import Record, rfc3339_ms
from picometer.reports.metrics import Gauges, Meter, exposition
from picometer.reports.report import objective_rows, objectives
from picometer.store.outbox import Outbox
from picometer.store.rollups import Rollups
from picometer.store.state import NotSaved, State
from picometer.store.usagelog import UsageLog
from picometer.watch.alerts import Alerter
from picometer.watch.canary import Canary
from picometer.watch.watchers import Watchers

if TYPE_CHECKING:  # the CLI imports this module and needs no HTTP client for alert channels
    from picometer.notify.channels import Channels

log = structlog.get_logger("picometer.ops")

RECENT_CALLS = 20  # the last calls kept in memory for the page


@dataclass(frozen=True, slots=True)
class Switched:
    """A pause or resume, as it now stands."""

    workflow: str
    paused: bool
    until: datetime | None = None  # a pause's end; None: until resumed
    by: str | None = None
    was_paused: bool = False  # a resume: whether there was a pause to lift
    warning: str | None = None  # the state file could not keep it: in force until picometer restarts
    at: datetime | None = None  # when it was done

    @property
    def saved(self) -> bool:
        return self.warning is None

    def sentence(self, zone: tzinfo) -> str:
        """In words, the same for every face; times in the operator's zone."""
        if not self.paused:
            return f"resumed {self.workflow}" if self.was_paused else f"{self.workflow} was not paused"
        if self.until is None:
            return f"paused {self.workflow} until resumed: its calls get 429 workflow_paused"
        span = f"for {format_duration(self.until - self.at)}, " if self.at is not None else ""
        return f"paused {self.workflow} {span}until {moment(self.until, zone)}: its calls get 429 workflow_paused"

    @classmethod
    def from_dict(cls, answer: Mapping[str, Any]) -> Switched:
        """The answer of POST /-/pause or /-/resume, read back (the CLI through the daemon)."""
        until, at = answer.get("until"), answer.get("at")
        return cls(
            str(answer["workflow"]),
            bool(answer["paused"]),
            datetime.fromisoformat(until) if isinstance(until, str) else None,
            answer.get("by"),
            bool(answer.get("was_paused", False)),
            answer.get("warning"),
            datetime.fromisoformat(at) if isinstance(at, str) else None,
        )

    def as_dict(self) -> dict[str, Any]:
        """The answer of POST /-/pause and /-/resume."""
        out: dict[str, Any] = {"workflow": self.workflow, "paused": self.paused}
        if self.paused:
            out["until"] = rfc3339_ms(self.until) if self.until else None
            out["by"] = self.by
            if self.at is not None:
                out["at"] = rfc3339_ms(self.at)
        else:
            out["was_paused"] = self.was_paused
        out["saved"] = self.saved
        if self.warning is not None:
            out["warning"] = self.warning
        return out


@dataclass(frozen=True, slots=True)
class Muted:
    """A mute of one kind of alert, for one scope ("" for every scope)."""

    kind: str
    scope: str
    until: datetime
    at: datetime

    def sentence(self, zone: tzinfo) -> str:
        where = f" for {self.scope}" if self.scope else ""
        span = format_duration(self.until - self.at)
        return f"{self.kind} alerts{where} muted for {span}, until {moment(self.until, zone)}; critical ones too"


def _hour(at: datetime) -> int:
    """The UTC hour the rollups count `at` in."""
    return math.floor(at.timestamp() / 3600)


def known_workflows(config: Config, rollups: Rollups | None, state: State, now: datetime) -> set[str]:
    """The workflows a person can mean: configured, seen in the calls counted so far, or paused now."""
    seen = rollups.workflows() if rollups is not None else set()
    return set(config.workflows) | seen | {p.workflow for p in state.pauses(now)}


def unknown(workflow: str, known: Collection[str]) -> str | None:
    """Why a pause of this name is likely a typo (with the nearest known names), or None when it is known."""
    if workflow in known:
        return None
    near = difflib.get_close_matches(workflow, sorted(known), n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(repr(n) for n in near)}?" if near else ""
    names = ", ".join(sorted(known)[:20]) or "none yet"
    return (
        f"no workflow named {workflow!r} has been configured or has made a call (known: {names}).{hint} "
        "To pause it before it first runs, pause it with force."
    )


def pause(state: State, workflow: str, until: datetime | None, by: str, now: datetime) -> Switched:
    """Stop a workflow's calls (429 workflow_paused) until `until` or a resume. It holds at once, even when
    the state file cannot keep it; the result says so."""
    warning = None
    try:
        state.pause(workflow, until, by, now)
    except NotSaved as e:
        warning = str(e)
        log.error("pause state not saved", error=warning)
    log.warning("workflow paused", workflow=workflow, until=until and until.isoformat(), by=by)
    return Switched(workflow, True, until, by, warning=warning, at=now)


def resume(state: State, workflow: str, by: str, now: datetime) -> Switched:
    """Let a workflow's calls through again."""
    was, warning = state.paused(workflow, now) is not None, None
    try:
        state.resume(workflow)
    except NotSaved as e:
        warning = str(e)
        log.error("pause state not saved", error=warning)
    log.info("workflow resumed", workflow=workflow, was_paused=was, by=by)
    return Switched(workflow, False, by=by, was_paused=was, warning=warning)


class Operations:
    """What a person can ask the running daemon, for every face: /-/status, /metrics, the bot, the page.
    Built once from the daemon's parts; `reconfigure` takes a reloaded config."""

    def __init__(
        self,
        config: Config,
        clock: Clock,
        zone: tzinfo,
        *,
        budget: Budget,
        rollups: Rollups,
        state: State,
        outbox: Outbox,
        usage_log: UsageLog,
        canary: Canary,
        gateway: Any,  # gateway.app.Gateway: not imported, it imports this module for pause and resume
        alerter: Alerter,
        alerts: Iterable[Alert],
        meter: Meter,
        watchers: Watchers,
        channels: Channels | None = None,
    ) -> None:
        self.config, self.clock, self.zone = config, clock, zone
        self.budget, self.rollups, self.state, self.outbox = budget, rollups, state, outbox
        self.usage_log, self.canary, self.gateway = usage_log, canary, gateway
        self.alerter, self.alerts, self.meter, self.watchers = alerter, alerts, meter, watchers
        self.channels = channels  # ntfy, Gotify, Discord, the webhook
        self.bot: Any = None  # watch.telegram.TelegramBot once it runs
        self.loaded_at = clock.now()
        self.last_reload: dict[str, Any] | None = None
        self.calls: deque[Record] = deque(maxlen=RECENT_CALLS)  # newest last

    def saw(self, record: Record) -> None:
        """A call was recorded: kept among the recent ones the page lists."""
        self.calls.append(record)

    def mute(self, kind: str, scope: str, span: timedelta) -> Muted:
        """Stop telling one kind of alert (for one scope, or "" for all) for a while; every face's mute."""
        if kind not in set(Kind):
            raise ValueError(f"{kind!r} is not an alert kind; kinds: {', '.join(Kind)}")
        now = self.clock.now()
        self.outbox.mute(kind, scope, now + span)
        log.info("alerts muted", kind=kind, scope=scope, until=(now + span).isoformat())
        return Muted(kind, scope, now + span, now)

    async def daily_spend(self, days: int) -> dict[str, Any]:
        """Each workflow's spend per local day over the last `days` days (today last) and this month so far, from
        the rollups (flushed first, so the last seconds count; on a worker thread)."""
        return await asyncio.to_thread(self._daily_spend, days)

    def _daily_spend(self, days: int) -> dict[str, Any]:
        now, zone = self.clock.now(), self.zone
        self.rollups.flush()
        today = period_key("day", now, zone)
        dates = [today - timedelta(days=n) for n in range(days - 1, -1, -1)]
        edges = [_hour(period_start(d, zone)) for d in dates] + [_hour(now) + 1]
        by_day: dict[str, list[float]] = {}
        for i in range(days):
            for row in self.rollups.summary(edges[i], edges[i + 1], "workflow"):
                by_day.setdefault(row["key"], [0.0] * days)[i] = row["cost_usd"]
        first = _hour(period_start(period_key("month", now, zone), zone))
        month = {row["key"]: row["cost_usd"] for row in self.rollups.summary(first, edges[-1], "workflow")}
        return {"days": [d.isoformat() for d in dates], "workflows": by_day, "month": month}

    def reconfigure(self, config: Config) -> None:
        self.config = config

    def wake_bot(self) -> None:
        """A message was queued: the bot, once it runs, sends it now."""
        if self.bot is not None:
            self.bot.wake()

    def known_workflows(self) -> set[str]:
        return known_workflows(self.config, self.rollups, self.state, self.clock.now())

    def status_line(self) -> str:
        """One line for `systemctl status`: spend against the global caps, and requests since start."""
        day, month = self.budget.spent(self.clock.now())
        day_cap, month_cap = self.budget.caps()
        parts = [f"today {usd(day)}" + (f" of {usd(day_cap.limit)}" if day_cap.limit else "")]
        parts.append(f"month {usd(month)}" + (f" of {usd(month_cap.limit)}" if month_cap.limit else ""))
        stats = self.gateway.stats
        parts.append(f"{stats.requests} requests ({stats.by_status.get('blocked', 0)} blocked) since start")
        results = self.canary.last.values()
        if results:
            parts.append(f"canary {sum(r.ok for r in results)}/{len(results)} ok")
        return ", ".join(parts)

    async def run_canary(self) -> dict[str, Any]:
        """Every probe now (after a scheduled run in progress, if any): what /-/canary answers."""
        results = await self.canary.run()
        return {"ok": all(r.ok for r in results), "results": [r.as_dict(self.zone) for r in results]}

    def objectives(self, rows: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """Each configured workflow's objectives: 28 days from the rollups, burn rates from the last hours."""
        now = self.clock.now()
        return objectives(self.rollups, self.config.workflows, now, lambda name: self.watchers.burns(name, now), rows)

    def paces(self) -> dict[str | None, int]:
        """Each capped scope's spend over the last hour, per hour (a rollups query)."""
        now = self.clock.now()
        return {
            lg.cap.workflow: to_pico(self.rollups.pace(now, lg.cap.workflow))
            for lg in self.budget.ledgers()
            if lg.cap.limit
        }

    def _rollup_reads(self) -> tuple[dict[str | None, int], dict[str, dict[str, Any]]]:
        now = self.clock.now()
        return self.paces(), objective_rows(self.rollups, now) if self.config.workflows else {}

    async def summaries(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Budgets with their pace and the objectives, for every face (/-/status, /metrics, the bot): the
        SQLite reads on a worker thread, so the event loop never waits for the rollups lock a flush may hold."""
        paces, rows = await asyncio.to_thread(self._rollup_reads)
        return self.budgets(paces), self.objectives(rows)

    def canary_status(self) -> dict[str, Any]:
        last = self.canary.last
        return {
            "interval_s": self.config.canary.interval_s,
            "probes": [
                {
                    "probe": p.name,
                    "failures_in_a_row": self.state.probe(p.name).count,
                    "last": last[p.name].as_dict(self.zone) if p.name in last else None,
                }
                for p in self.config.canary.probes
            ],
        }

    async def metrics(self) -> tuple[bytes, str]:
        """GET /metrics: the counters, and the gauges read now."""
        budgets, objectives = await self.summaries()
        log_ = self.usage_log
        gauges = Gauges(
            retries=self.gateway.retries(),
            budgets=budgets,
            canary={name: result.ok for name, result in self.canary.last.items()},
            alerts_sent=self.alerter.told,
            usage_log_bytes=log_.total_bytes(),
            records_dropped=log_.dropped,
            objectives=objectives,
        )
        return exposition(self.meter, gauges)

    def budgets(self, paces: dict[str | None, int] | None = None) -> list[dict[str, Any]]:
        """Every cap with its spend, what calls in flight hold, and when it resets or will be reached."""
        now = self.clock.now()
        self.budget.roll(now)
        out = []
        paces = self.paces() if paces is None else paces
        for lg in self.budget.ledgers():
            if lg.cap.limit and lg.key is not None:
                pace = paces.get(lg.cap.workflow, 0)
                out.append(cap_status(lg.cap, lg.key, lg.spent, lg.reserved, pace, now, self.zone))
        return out

    def spend(self) -> dict[str, float]:
        """Today's and this month's spend over everything, exact to the last settled call."""
        day, month = self.budget.spent(self.clock.now())
        return {"today": round(to_usd(day), 9), "month": round(to_usd(month), 9)}

    async def full_status(self) -> dict[str, Any]:
        """Everything GET /-/status answers: the gateway's own part and the daemon's."""
        return {**self.gateway.status(), **(await self.status())}

    async def status(self) -> dict[str, Any]:
        budgets, objectives = await self.summaries()
        log_ = self.usage_log
        now = self.clock.now()
        return {
            "spend_usd": self.spend(),
            "budgets": budgets,
            "pauses": [
                {"workflow": p.workflow, "until": p.until and p.until.astimezone(self.zone).isoformat(), "by": p.by}
                for p in self.state.pauses(now)
            ],
            "alerts": [a.as_dict(self.zone) for a in self.alerts],
            "canary": self.canary_status(),
            "objectives": objectives,
            "fallbacks": self.watchers.fallbacks(now),
            "telegram": {
                "enabled": self.config.telegram.enabled,
                "connected": self.bot is not None and self.bot.connected,
                "queued": self.outbox.pending(),
                "failures_in_a_row": self.bot.failures if self.bot is not None else 0,
            },
            "channels": self.channels.state() if self.channels is not None else {},
            "usage_log": {
                "path": str(log_.path),
                "bytes": log_.total_bytes(),
                "max_bytes": log_.max_bytes,
                "records_written": log_.written,
                "records_dropped": log_.dropped,
                "disk_low": log_.disk_low,
            },
            "rollups": {"watermark": str(self.rollups.watermark), "flush_failures": self.rollups.flush_failures},
            "config": {
                "source": self.config.source or "built-in defaults",
                "loaded_at": self.loaded_at.astimezone(self.zone).isoformat(timespec="seconds"),
                "last_reload": self.last_reload,
            },
        }
