"""Composition root: build the parts from the config, serve, and close cleanly."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import gc
import logging
import os
import signal
import socket
import sqlite3
import sys
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
import uvicorn

from picometer.alert import Alert, Kind
from picometer.clock import Clock, NotBefore, SystemClock, resolve_zone
from picometer.config import Config, ConfigError, ServerConfig, keep_for_restart, load_config, restart_needed
from picometer.gateway.app import Gateway
from picometer.gateway.connections import bounded_protocol
from picometer.metering.budget import Budget, Event, cap_status, caps_from_config, event_message, to_pico, to_usd, usd
from picometer.metering.pricing import Pricer
from picometer.record import Record, Recorder
from picometer.reports.export import file_name, last_full_week, summary, to_csv, week_label, week_rows, write_atomic
from picometer.reports.metrics import Gauges, Meter, exposition
from picometer.reports.report import objective_rows, objectives
from picometer.service import Notifier
from picometer.store.outbox import Outbox
from picometer.store.rollups import Rollups
from picometer.store.state import State
from picometer.store.usagelog import UsageLog
from picometer.watch.alerts import Alerter, esc
from picometer.watch.anomaly import BASELINE_HOURS, baselines
from picometer.watch.canary import Canary
from picometer.watch.watchers import Watchers

if TYPE_CHECKING:
    from picometer.watch.telegram import TelegramBot

log = structlog.get_logger("picometer.daemon")


def configure_logging(level: str = "info") -> None:
    """The daemon's own log: logfmt lines on stderr, which journald stores and timestamps."""
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.format_exc_info,
            structlog.processors.LogfmtRenderer(key_order=["level", "event"], drop_missing=True),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on such sockets; without it replies stall ~40 ms.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


class _Server(uvicorn.Server):
    """uvicorn without its signal handling: it re-raises SIGTERM after shutdown, killing the process
    before our final flush. The daemon handles SIGTERM/SIGINT itself (see run())."""

    on_started: Callable[[], None] | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self.on_started is not None:
            self.on_started()  # listening, and the app's startup has completed: /-/health answers 200


def own_url(sock: socket.socket) -> str:
    """How this process reaches its own listener (the canary goes through it): a wildcard address via loopback."""
    host, port = sock.getsockname()[:2]
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def uvicorn_server(
    app: Any, log_level: str = "warning", graceful_s: int = 30, server: ServerConfig | None = None
) -> _Server:
    """uvicorn on h11 and asyncio (pure Python, so the same install works on every Pi); with `server`, its
    connections bounded by [server].max_connections and header_timeout_s."""
    http: Any = "h11" if server is None else bounded_protocol(server.max_connections, server.header_timeout_s)
    config = uvicorn.Config(
        app,
        http=http,
        loop="asyncio",
        lifespan="on",
        log_level=log_level,
        log_config=None,
        access_log=False,
        server_header=False,
        date_header=False,
        timeout_graceful_shutdown=graceful_s,
    )
    return _Server(config)


ALERTS_KEPT = 50  # recent alerts shown in /-/status
FLUSH_INTERVAL_S = 2.0  # rollups reach SQLite this often; a crash replays the rest from the log
PRUNE_INTERVAL_S = 3600.0
CHECK_INTERVAL_S = 3600.0  # SQLite's quick check of the rollups: a file going bad is found within the hour
WATCH_INTERVAL_S = 10.0  # anomaly checks; budget alerts do not wait for this, they come from the call itself
BASELINE_INTERVAL_S = 3600.0  # the anomaly baselines (last 7 days from the rollups) are rebuilt hourly
EXPORT_AFTER = timedelta(minutes=10)  # the weekly CSV is written on Monday at 00:10, local time
EXPORT_CATCH_UP_WEEKS = 8  # weeks missed while down that are written at the next start
EXPORT_RETRY_S = 600.0  # after a failed write (disk full, permissions)


def alert_chats(config: Config) -> tuple[int, ...]:
    """Where alerts are queued for delivery; none without Telegram (then: the log and /-/status)."""
    return config.telegram.chat_ids if config.telegram.enabled else ()


class Daemon:
    """The gateway and everything it writes to, built from one config."""

    def __init__(self, config: Config, clock: Clock | None = None) -> None:
        self.config = config
        base = clock or SystemClock()
        self.zone = resolve_zone(config.budgets.timezone)
        self.usage_log = UsageLog(config.storage, base)
        self.rollups = Rollups(
            Path(config.storage.data_dir) / "rollups.db", config.storage.max_series, frozenset(config.workflows)
        )
        self.rollups.replay(self.usage_log.dir)
        # From here on, time never runs behind the newest record: a stale boot clock opens no fresh budget period.
        self.clock = NotBefore(base, self.rollups.newest)
        self.usage_log.clock = self.clock
        if self.clock.behind_s() > 60:
            log.warning(
                "the system clock is behind the newest usage record: counting in the newest period seen until "
                "it catches up (a Pi without a real-time clock, before NTP answers)",
                behind_s=round(self.clock.behind_s()),
                newest=self.rollups.newest.isoformat() if self.rollups.newest else None,
            )
        self.state = State(Path(config.storage.data_dir) / "state.db")
        self.alerts: collections.deque[Alert] = collections.deque(maxlen=ALERTS_KEPT)
        self.outbox = Outbox(Path(config.storage.data_dir) / "alerts.db")
        self.bot: TelegramBot | None = None
        self.alerter = Alerter(config.alerts, self.zone, self.outbox, alert_chats(config), wake=self._wake_bot)
        self.watchers = Watchers(config, self.zone, self.clock.now())
        self._background: set[asyncio.Task[None]] = set()  # alerts being told off the request path
        self._dropping = False  # records dropped: told when an episode starts
        self._dropped_seen = 0
        self.budget = Budget(caps_from_config(config), self.zone, notify=self.on_budget_event)
        # Spend this day and month so far, from the durable records: a restart never resets a budget.
        self.budget.seed(self.clock.now(), self.rollups.spend_since)
        self.pricer = Pricer(config.prices)
        self.canary = Canary(config, self.state, self.clock, self.zone, self.alert)
        self.meter = Meter(config)
        self.gateway = Gateway(
            config,
            clock=self.clock,
            pricer=self.pricer,
            recorder=Recorder(self.usage_log, self.rollups, observe=self._observe),
            budget=self.budget,
            state=self.state,
            status_extra=self.status,
            alert=self._alert_later,
            canary_token=self.canary.token,
            run_canary=self.run_canary,
            metrics=self.metrics,
        )
        self._tell_rebuilt()
        self.loaded_at = self.clock.now()
        self.last_reload: dict[str, Any] | None = None
        self.server = uvicorn_server(self.gateway, server=config.server)
        self.notifier = Notifier(os.environ)
        self.server.on_started = lambda: self.notifier.ready(self.status_line())

    def _tell_rebuilt(self) -> None:
        """A damaged SQLite file was moved aside at start and a fresh one made: say what that means."""
        for name, store in (("rollups", self.rollups), ("state", self.state), ("alerts", self.outbox)):
            if store.moved_aside is not None:
                self._tell_damaged(name, store.moved_aside)

    def _tell_damaged(self, name: str, aside: Path) -> None:
        what = {
            "rollups": "the totals were rebuilt from the usage log (calls older than the log's retention are gone "
            "from reports)",
            "state": "pauses, canary failure runs and the last weekly CSV mark were lost: check `picometer status` "
            "and pause again what should stay paused",
            "alerts": "alerts queued for delivery, mutes and cooldowns were lost",
        }
        message = (
            f"The {name} database was damaged and has been replaced by a fresh one; {what[name]}. "
            f"The damaged file is kept as {aside} (remove it once you are done with it)."
        )
        log.error("damaged database replaced", database=name, kept_as=str(aside))
        self.alert(Alert(Kind.DATABASE_REBUILT, f"database_rebuilt:{name}", message, self.clock.now()))

    def reload(self) -> None:
        """SIGHUP: read the config file again and apply what can change while running (prices, budgets,
        workflows, providers, keys, alerts). A broken file changes nothing; /-/status tells what happened."""
        self.notifier.reloading()
        now = self.clock.now()
        at = now.astimezone(self.zone).isoformat(timespec="seconds")
        path = Path(self.config.source) if self.config.source else None
        try:
            new = load_config(path, os.environ)
            restart = restart_needed(self.config, new)
            new = keep_for_restart(self.config, new)
        except ConfigError as e:
            self.last_reload = {"at": at, "ok": False, "error": str(e)}
            log.error("config reload refused: still running the previous config", error=str(e))
        else:
            self.rollups.protected = frozenset(new.workflows)
            self.rollups.flush()  # a workflow new to the budgets starts from every call counted so far
            self.budget.reconfigure(caps_from_config(new), now, self.rollups.spend_since)
            self.pricer = Pricer(new.prices)
            self.gateway.reconfigure(new, self.pricer)
            self.alerter.reconfigure(new.alerts, alert_chats(new))
            self.watchers.config = new
            self.canary.config = new
            self.meter.reconfigure(new)
            self.config = new
            self.loaded_at = now
            self.last_reload = {"at": at, "ok": True, "restart_needed": restart}
            log.info("config reloaded", source=new.source or "built-in defaults")
            if restart:
                log.warning(
                    "config reload: these changes wait for a restart (systemctl restart picometer)",
                    keys=",".join(restart),
                )
        self.notifier.ready(self.status_line())

    def warm_up(self) -> None:
        """Load the price data now, so the first real call does not wait for it."""
        provider = next(iter(self.config.providers.values()), None)
        if provider is not None:
            self.pricer.is_priced(provider, "gpt-4o-mini", self.clock.now())

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

    def alert(self, alert: Alert) -> None:
        """Through the alert policy; what is told is logged, kept for /-/status and queued for Telegram."""
        try:
            outcome = self.alerter.handle(alert)
        except Exception:  # an alert must never fail the call that raised it
            log.exception("alert handling failed", kind=str(alert.kind), message=alert.message)
            outcome = "told"
        if outcome in ("told", "held"):
            log.warning(str(alert.kind), severity=str(alert.severity), scope=alert.scope, message=alert.message)
            self.alerts.append(alert)

    def _alert_later(self, alert: Alert) -> None:
        """An alert raised on the request path: handled once the request has moved on (the outbox is SQLite)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.alert(alert)
            return
        loop.call_soon(self.alert, alert, context=contextvars.Context())

    def _observe(self, record: Record) -> None:
        self.meter.observe(record)
        self.watchers.observe(record, self.clock.now())

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

    def _wake_bot(self) -> None:
        if self.bot is not None:
            self.bot.wake()

    def watch(self) -> None:
        """Anomalies now, and the "over" note for those that passed."""
        now = self.clock.now()
        for alert in self.watchers.check(now):
            self.alert(alert)
        self.watch_usage_log()
        self.state.pauses(now)  # expired pauses leave the state file here, never on the request path
        self.alerter.retry_unsaved()
        for key in self.alerter.settle(now):
            log.info("alert over", key=key)

    def weekly_export(self) -> list[tuple[Path, str]]:
        """Write each finished week not written yet into [export].dir (on a worker thread); each file with
        its two-line summary. Due on Monday 00:10 local; weeks missed while down are written at the next check."""
        cfg = self.config.export
        due = last_full_week(self.clock.now() - EXPORT_AFTER, self.zone)
        done = self.state.meta("export_week")
        if not cfg.weekly or (done is not None and done >= week_label(due)):
            return []
        mondays = [due - timedelta(weeks=k) for k in reversed(range(EXPORT_CATCH_UP_WEEKS))]
        self.rollups.flush()
        written = []
        for monday in [due] if done is None else [m for m in mondays if week_label(m) > done]:
            rows = week_rows(self.rollups, monday, self.zone)
            if done is None and not rows:  # a first start: no file for a week before picometer ran
                self.state.set_meta("export_week", week_label(monday))
                continue
            path = Path(cfg.dir) / file_name(monday)
            write_atomic(path, to_csv(rows))
            self.state.set_meta("export_week", week_label(monday))
            log.info("weekly CSV written", path=str(path), rows=len(rows))
            previous = week_rows(self.rollups, monday - timedelta(weeks=1), self.zone)
            written.append((path, summary(rows, previous, monday)))
        return written

    def send_export(self, path: Path, caption: str) -> None:
        """Queue a written CSV for the Telegram chats (on the loop: the outbox and the bot's wake-up live there)."""
        chats = alert_chats(self.config)
        if self.config.export.send_to_telegram and chats:
            now = self.clock.now()
            text = f"📊 <b>weekly CSV</b>\n{esc(caption)}"
            self.outbox.put(chats, "weekly_csv", 2, text, (), now, now, document=str(path))
            self._wake_bot()

    def refresh_baselines(self) -> None:
        """The last 7 days per workflow, hour by hour, from the rollups (on a worker thread)."""
        end = int(self.clock.now().timestamp()) // 3600
        self.watchers.baselines = baselines(self.rollups.history(end - BASELINE_HOURS, end), end)

    def on_budget_event(self, event: Event) -> None:
        """A threshold crossed or a cap's first refusal, raised on the request path: told from a task of its own,
        with the pace read on a worker thread (the rollups lock may be held by a flush)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.tell_budget(event, self.rollups.pace(event.at, event.cap.workflow))
            return
        task = loop.create_task(self._tell_budget_later(event), context=contextvars.Context())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _tell_budget_later(self, event: Event) -> None:
        self.tell_budget(event, await asyncio.to_thread(self.rollups.pace, event.at, event.cap.workflow))

    def tell_budget(self, event: Event, pace_usd: float) -> None:
        pace = to_pico(pace_usd)
        kind = Kind.BUDGET_THRESHOLD if event.kind == "threshold" else Kind.BUDGET_BLOCKED
        key = f"{kind}:{event.cap.name}" + (f":{event.threshold:g}" if event.threshold is not None else "")
        self.alert(Alert(kind, key, event_message(event, pace, self.zone), event.at, event.cap.scope))

    def watch_usage_log(self) -> None:
        """Disk low and dropped records, told when they start (the log says when they stop)."""
        log_, now = self.usage_log, self.clock.now()
        if log_.disk_low:  # raised on every check while it lasts; the policy tells it once, then "over"
            self.alert(
                Alert(
                    Kind.DISK_LOW,
                    "disk_low",
                    f"Less than {self.config.storage.min_free_mb} MB free on {log_.dir}: raw usage lines are being "
                    "dropped; the rollups still count every call. Free some space on that disk.",
                    now,
                )
            )
        dropping = log_.dropped > self._dropped_seen
        if dropping and not self._dropping:
            self.alert(
                Alert(
                    Kind.RECORDS_DROPPED,
                    "records_dropped",
                    f"{log_.dropped - self._dropped_seen} usage log lines dropped ({log_.dropped} since start): "
                    "the disk is full or low. Totals stay right in the rollups; free space to keep the raw log.",
                    now,
                )
            )
        self._dropping, self._dropped_seen = dropping, log_.dropped

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
            "telegram": {
                "enabled": self.config.telegram.enabled,
                "connected": self.bot is not None and self.bot.connected,
                "queued": self.outbox.pending(),
                "failures_in_a_row": self.bot.failures if self.bot is not None else 0,
            },
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

    async def _tick(self) -> None:
        """Flush rollups, fsync the log, prune old files: each on a worker thread, never on the loop."""
        last_sync = last_prune = last_watch = self.clock.monotonic()
        last_baseline = -BASELINE_INTERVAL_S  # the first tick builds them: start-up does not wait for the query
        last_export = -WATCH_INTERVAL_S  # the first tick writes a week missed while down
        export_retry_at = 0.0
        last_check = self.clock.monotonic()
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            await asyncio.to_thread(self.rollups.flush)
            now = self.clock.monotonic()
            if now - last_check >= CHECK_INTERVAL_S:
                last_check = now
                await asyncio.to_thread(self.rollups.check)
            if self.rollups.damaged:
                aside = await asyncio.to_thread(self.rollups.heal, self.usage_log.dir)
                self._tell_damaged("rollups", aside)
            if now - last_watch >= WATCH_INTERVAL_S:
                last_watch = now
                self.watch()
            if now - last_export >= WATCH_INTERVAL_S and now >= export_retry_at:
                last_export = now
                try:
                    for path, caption in await asyncio.to_thread(self.weekly_export):
                        self.send_export(path, caption)
                except (OSError, sqlite3.Error) as e:
                    export_retry_at = now + EXPORT_RETRY_S
                    log.error("weekly CSV not written; will retry", dir=self.config.export.dir, error=str(e))
            if self.notifier.enabled:
                self.notifier.status(self.status_line())
            if now - last_sync >= self.config.storage.fsync_interval_s:
                last_sync = now
                await asyncio.to_thread(self.usage_log.sync)
            if now - last_baseline >= BASELINE_INTERVAL_S:
                last_baseline = now
                await asyncio.to_thread(self.refresh_baselines)
            if now - last_prune >= PRUNE_INTERVAL_S:
                last_prune = now
                await asyncio.to_thread(self.usage_log.prune)
                await asyncio.to_thread(self.rollups.prune_spend, self.clock.now())

    async def serve(self, sock: socket.socket | None = None) -> None:
        cfg = self.config.server
        sock = sock or bind_socket(cfg.host, cfg.port)
        self.warm_up()
        # Price tables and imports live forever: keep them out of every later GC pass (a p99 saver).
        gc.collect()
        gc.freeze()
        log.info("picometer listening", listen=cfg.listen, usage_log=str(self.usage_log.path))
        self.canary.connect(own_url(sock))
        tasks = [
            asyncio.create_task(self._tick()),
            asyncio.create_task(self.notifier.watchdog()),
            asyncio.create_task(self.canary.loop()),
        ]
        if self.config.telegram.enabled:
            tasks.append(asyncio.create_task(self._start_bot()))
        try:
            # uvicorn stops accepting on SIGTERM and lets in-flight requests finish (bounded) first.
            await self.server.serve(sockets=[sock])
        finally:
            for task in tasks:
                task.cancel()
            if self.bot is not None:
                await self.bot.close()
            await self.canary.aclose()
            self.close()
            log.info("picometer stopped", requests=self.gateway.stats.requests)

    async def _start_bot(self) -> None:
        from picometer.watch.commands import Commands
        from picometer.watch.telegram import TelegramBot  # the library loads only when Telegram is on

        token = self.config.secrets["telegram.bot_token"].value
        self.bot = TelegramBot(self.config.telegram, token, self.outbox, Commands(self), self.clock)
        await self.bot.run()

    def close(self) -> None:
        self.usage_log.close()
        self.rollups.close()
        self.state.close()
        self.outbox.close()

    def stop(self) -> None:
        self.notifier.stopping()
        self.server.should_exit = True


def run(config: Config) -> None:
    configure_logging()

    async def main() -> None:
        daemon = Daemon(config)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, daemon.stop)  # stop accepting, drain, flush, exit 0
        loop.add_signal_handler(signal.SIGHUP, daemon.reload)  # systemctl reload picometer
        await daemon.serve()

    asyncio.run(main())


async def canary_once(config: Config) -> dict[str, Any]:
    """`picometer canary` while the daemon is down: the same gateway in-process, writing the same records."""
    import httpx

    configure_logging("warning")  # stdout is for the results; alerts raised here still show on stderr
    daemon = Daemon(config)
    daemon.canary.connect("http://picometer", transport=httpx.ASGITransport(app=daemon.gateway))
    try:
        return await daemon.run_canary()
    finally:
        await daemon.canary.aclose()
        await daemon.gateway.aclose()
        daemon.close()
