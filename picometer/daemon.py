"""The lifecycle of a running picometer: serve what compose built, run its chores on a timer, reload on SIGHUP,
drain and stop cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import os
import signal
import socket
import sqlite3
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import structlog
import uvicorn

from picometer.clock import Clock
from picometer.compose import build
from picometer.config import (
    Config,
    ConfigError,
    ServerConfig,
    keep_for_restart,
    load_config,
    restart_needed,
)
from picometer.gateway.connections import bounded_protocol
from picometer.logs import configure_logging
from picometer.metering.budget import caps_from_config
from picometer.preflight import bind_socket, check_start
from picometer.reports.export import write_due_weeks
from picometer.service import Notifier
from picometer.watch.alerts import alert_chats, esc
from picometer.watch.anomaly import BASELINE_HOURS, baselines

log = structlog.get_logger("picometer.daemon")


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


FLUSH_INTERVAL_S = 2.0  # rollups reach SQLite this often; a crash replays the rest from the log
PRUNE_INTERVAL_S = 3600.0
CHECK_INTERVAL_S = 3600.0  # SQLite's quick check of the rollups: a file going bad is found within the hour
WATCH_INTERVAL_S = 10.0  # anomaly checks; budget alerts do not wait for this, they come from the call itself
BASELINE_INTERVAL_S = 3600.0  # the anomaly baselines (last 7 days from the rollups) are rebuilt hourly
EXPORT_RETRY_S = 600.0  # after a failed write (disk full, permissions)


class Daemon:
    """The gateway and everything it writes to, built from one config."""

    def __init__(self, config: Config, clock: Clock | None = None) -> None:
        parts = build(config, clock)
        self.config, self.clock, self.zone = parts.config, parts.clock, parts.zone
        self.usage_log, self.rollups, self.state, self.outbox = (
            parts.usage_log,
            parts.rollups,
            parts.state,
            parts.outbox,
        )
        self.alerter, self.watchers, self.teller, self.budget = (
            parts.alerter,
            parts.watchers,
            parts.teller,
            parts.budget,
        )
        self.pricer, self.canary, self.meter, self.gateway = parts.pricer, parts.canary, parts.meter, parts.gateway
        self.ops, self.reloadable, self.channels = parts.ops, parts.reloadable, parts.channels
        self.alert, self.alerts = self.teller.alert, self.teller.recent
        # When each chore last ran; those not here (baselines, the weekly CSV) run at the first tick.
        started = self.clock.monotonic()
        self._last_done = {"check": started, "watch": started, "sync": started, "prune": started}
        self._export_retry_at = 0.0
        self.server = uvicorn_server(self.gateway, server=config.server)
        self.notifier = Notifier(os.environ)
        self.server.on_started = lambda: self.notifier.ready(self.ops.status_line())

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
            self.ops.last_reload = {"at": at, "ok": False, "error": str(e)}
            log.error("config reload refused: still running the previous config", error=str(e))
        else:
            self.rollups.protected = frozenset(new.workflows)
            self.gateway.recorder.drain()
            self.rollups.flush()  # a workflow new to the budgets starts from every call counted so far
            self.budget.reconfigure(caps_from_config(new), now, self.rollups.spend_since)
            for part in self.reloadable:
                part.reconfigure(new)
            self.config = new
            self.ops.loaded_at = now
            self.ops.last_reload = {"at": at, "ok": True, "restart_needed": restart}
            log.info("config reloaded", source=new.source or "built-in defaults")
            if restart:
                log.warning(
                    "config reload: these changes wait for a restart (systemctl restart picometer)",
                    keys=",".join(restart),
                )
        self.notifier.ready(self.ops.status_line())

    def warm_up(self) -> None:
        """Load the price data now, so the first real call does not wait for it."""
        provider = next(iter(self.config.providers.values()), None)
        if provider is not None:
            self.pricer.is_priced(provider, "gpt-4o-mini", self.clock.now())

    def watch(self) -> None:
        """Anomalies now, and the "over" note for those that passed."""
        now = self.clock.now()
        for alert in self.watchers.check(now):
            self.alert(alert)
        self.teller.watch_usage_log()
        self.state.pauses(now)  # expired pauses leave the state file here, never on the request path
        self.alerter.retry_unsaved()
        self.channels.retry_unsaved()
        for key in self.alerter.settle(now):
            log.info("alert over", key=key)
            self.teller.over(key, now)

    def weekly_export(self) -> list[tuple[Path, str]]:
        """The weekly CSVs due now (on a worker thread), each with its two-line summary."""
        return write_due_weeks(self.rollups, self.state, self.config.export, self.zone, self.clock.now())

    def send_export(self, path: Path, caption: str) -> None:
        """Queue a written CSV for the Telegram chats (on the loop: the outbox and the bot's wake-up live there)."""
        chats = alert_chats(self.config)
        if self.config.export.send_to_telegram and chats:
            now = self.clock.now()
            text = f"📊 <b>weekly CSV</b>\n{esc(caption)}"
            self.outbox.put(chats, "weekly_csv", 2, text, (), now, now, document=str(path))
            self.ops.wake_bot()

    def refresh_baselines(self) -> None:
        """The last 7 days per workflow, hour by hour, from the rollups (on a worker thread)."""
        end = int(self.clock.now().timestamp()) // 3600
        self.watchers.baselines = baselines(self.rollups.history(end - BASELINE_HOURS, end), end)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            await self.tick()

    async def tick(self) -> None:
        """One pass of the chores that are due: flush, checks, the weekly CSV, fsync, baselines, pruning, each
        on a worker thread, never on the loop. The loop runs it every FLUSH_INTERVAL_S; a test, when it likes."""
        self.gateway.recorder.drain()  # records of calls still open (each is folded as its call ends)
        await asyncio.to_thread(self.rollups.flush)
        now = self.clock.monotonic()
        if self._due("check", now, CHECK_INTERVAL_S):
            await asyncio.to_thread(self.rollups.check)
        if self.rollups.damaged:
            aside = await asyncio.to_thread(self.rollups.heal, self.usage_log.dir)
            self.teller.damaged("rollups", aside)
        if self._due("watch", now, WATCH_INTERVAL_S):
            self.watch()
        if now >= self._export_retry_at and self._due("export", now, WATCH_INTERVAL_S):
            try:
                for path, caption in await asyncio.to_thread(self.weekly_export):
                    self.send_export(path, caption)
            except (OSError, sqlite3.Error) as e:
                self._export_retry_at = now + EXPORT_RETRY_S
                log.error("weekly CSV not written; will retry", dir=self.config.export.dir, error=str(e))
        if self.notifier.enabled:
            self.notifier.status(self.ops.status_line())
        if self._due("sync", now, self.config.storage.fsync_interval_s):
            await asyncio.to_thread(self.usage_log.sync)
        if self._due("baselines", now, BASELINE_INTERVAL_S):
            await asyncio.to_thread(self.refresh_baselines)
        if self._due("prune", now, PRUNE_INTERVAL_S):
            await asyncio.to_thread(self.usage_log.prune)
            await asyncio.to_thread(self.rollups.prune_spend, self.clock.now())
            if self.config.cache.enabled:
                await asyncio.to_thread(self.gateway.proxy.cache.prune, self.clock.now())

    def _due(self, chore: str, now: float, every: float) -> bool:
        if now - self._last_done.get(chore, float("-inf")) < every:
            return False
        self._last_done[chore] = now
        return True

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
        if self.channels.on:
            tasks.append(asyncio.create_task(self.channels.run()))
        try:
            # uvicorn stops accepting on SIGTERM and lets in-flight requests finish (bounded) first.
            await self.server.serve(sockets=[sock])
        finally:
            for task in tasks:
                task.cancel()
            if self.ops.bot is not None:
                await self.ops.bot.close()
            await self.canary.aclose()
            self.close()
            log.info("picometer stopped", requests=self.gateway.stats.requests)

    async def _start_bot(self) -> None:
        from picometer.watch.commands import Commands
        from picometer.watch.telegram import TelegramBot  # the library loads only when Telegram is on

        token = self.config.secrets["telegram.bot_token"].value
        bot = self.ops.bot = TelegramBot(self.config.telegram, token, self.outbox, Commands(self.ops), self.clock)
        await bot.run()

    def close(self) -> None:
        self.gateway.recorder.drain()  # the last records' rollups, before the final flush
        self.usage_log.close()
        self.rollups.close()
        self.state.close()
        self.outbox.close()

    def stop(self) -> None:
        self.notifier.stopping()
        self.server.should_exit = True


def run(config: Config, simulate: bool = False) -> None:
    """The daemon until SIGTERM; CannotStart (before anything is built) when the port or a directory is not
    usable. `simulate`: the built-in simulated provider answers for every provider (no key, nothing billed)."""
    sock = check_start(config)
    configure_logging()
    return_big_blocks()
    sim_sock = bind_socket("127.0.0.1", 0) if simulate else None
    if sim_sock is not None:
        config = simulated(config, f"http://127.0.0.1:{sim_sock.getsockname()[1]}")

    async def main() -> None:
        daemon = Daemon(config)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, daemon.stop)  # stop accepting, drain, flush, exit 0
        loop.add_signal_handler(signal.SIGHUP, daemon.reload)  # systemctl reload picometer
        if sim_sock is None:
            await daemon.serve(sock)
            return
        from picometer.simulator import Simulator

        sim = uvicorn_server(Simulator(), log_level="error", graceful_s=1)
        sim_task = asyncio.create_task(sim.serve(sockets=[sim_sock]))
        print(try_it(own_url(sock), config), flush=True)
        try:
            await daemon.serve(sock)
        finally:
            sim.should_exit = True
            await sim_task

    asyncio.run(main())


MMAP_THRESHOLD = 512 * 1024  # above the 256 KiB buffer asyncio reads each socket into: those stay on the heap
_M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)


def return_big_blocks() -> None:
    """Blocks of MMAP_THRESHOLD and more (a big request body, an 8 MB answer) go back to the system once freed.
    glibc raises its threshold after freeing the first such block, so the next ones come from the heap, where
    small allocations made after them keep the memory held: 17 MB more RSS after three 9 MB bodies. Not glibc
    (musl, macOS, a Python without ctypes): nothing to do, and never a reason not to start."""
    with contextlib.suppress(ImportError, OSError, AttributeError, TypeError):
        import ctypes

        ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)


async def canary_once(config: Config) -> dict[str, Any]:
    """`picometer canary` while the daemon is down: the same gateway in-process, writing the same records."""
    import httpx

    configure_logging("warning")  # stdout is for the results; alerts raised here still show on stderr
    daemon = Daemon(config)
    daemon.canary.connect("http://picometer", transport=httpx.ASGITransport(app=daemon.gateway))
    try:
        return await daemon.ops.run_canary()
    finally:
        await daemon.canary.aclose()
        await daemon.gateway.aclose()
        daemon.close()


def simulated(config: Config, sim_url: str) -> Config:
    """Every provider answered by the simulator at `sim_url`, with no key (`run --simulate`)."""
    providers = {
        name: dataclasses.replace(p, base_url=f"{sim_url}/v1" if p.kind == "openai" else sim_url, api_key="")
        for name, p in config.providers.items()
    }
    secrets = {k: v for k, v in config.secrets.items() if not k.startswith("providers.")}
    return dataclasses.replace(config, providers=providers, secrets=types.MappingProxyType(secrets))


def try_it(url: str, config: Config) -> str:
    """What to paste to make a first call through picometer (printed by `run --simulate` and the demo)."""
    kinds = {p.kind: name for name, p in reversed(list(config.providers.items()))}  # the first of each kind
    lines = [f"picometer is serving on {url} with the simulated provider (no key needed, nothing billed). Try:"]
    if "openai" in kinds:
        base = f"{url}/{kinds['openai']}"
        lines += [
            f'  OpenAI SDK:    OpenAI(base_url="{base}", api_key="sim")',
            f"  curl:          curl -s {base}/chat/completions -H 'content-type: application/json' "
            """-d '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]}'""",
        ]
    if "anthropic" in kinds:
        lines.append(f'  Anthropic SDK: Anthropic(base_url="{url}/{kinds["anthropic"]}", api_key="sim")')
    lines.append("Every call is recorded: `picometer report` and `picometer status` show them; Ctrl-C stops.")
    return "\n".join(lines)
