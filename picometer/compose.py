"""The composition root: every part of a running picometer built from one config and wired to the others,
once. The daemon (picometer.daemon) runs what this builds; `picometer canary` and the demo build the same."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import tzinfo
from pathlib import Path

import structlog

from picometer.clock import Clock, NotBefore, SystemClock, resolve_zone
from picometer.config import Config, Reloadable
from picometer.gateway.app import Gateway
from picometer.metering.budget import Budget, caps_from_config
from picometer.metering.pricing import Pricer
from picometer.notify.channels import Channels
from picometer.ops import Operations
from picometer.page.serve import Page
from picometer.record import Record, Recorder
from picometer.reports.metrics import Meter
from picometer.store.outbox import Outbox
from picometer.store.rollups import Rollups
from picometer.store.state import State
from picometer.store.usagelog import UsageLog
from picometer.watch.alerts import Alerter, alert_chats
from picometer.watch.canary import Canary
from picometer.watch.loops import Loops
from picometer.watch.telling import Teller
from picometer.watch.watchers import Watchers

log = structlog.get_logger("picometer.daemon")


@dataclass(frozen=True)
class Parts:
    config: Config
    clock: NotBefore
    zone: tzinfo
    usage_log: UsageLog
    rollups: Rollups
    state: State
    outbox: Outbox
    alerter: Alerter
    watchers: Watchers
    teller: Teller
    budget: Budget
    pricer: Pricer
    canary: Canary
    meter: Meter
    gateway: Gateway
    ops: Operations
    reloadable: tuple[Reloadable, ...]  # what takes a reloaded config in place (rollups and budgets need more)
    channels: Channels  # ntfy, Gotify, Discord, the webhook: delivered while the daemon serves


def build(config: Config, base: Clock | None = None) -> Parts:
    """Open the stores (replaying the usage log into the rollups), then build everything that uses them."""
    base = base or SystemClock()
    zone = resolve_zone(config.budgets.timezone)
    usage_log = UsageLog(config.storage, base)
    data = Path(config.storage.data_dir)
    rollups = Rollups(data / "rollups.db", config.storage.max_series, frozenset(config.workflows))
    rollups.replay(usage_log.dir)
    # From here on, time never runs behind the newest record: a stale boot clock opens no fresh budget period.
    clock = NotBefore(base, rollups.newest)
    usage_log.clock = clock
    if clock.behind_s() > 60:
        log.warning(
            "the system clock is behind the newest usage record: counting in the newest period seen until "
            "it catches up (a Pi without a real-time clock, before NTP answers)",
            behind_s=round(clock.behind_s()),
            newest=rollups.newest.isoformat() if rollups.newest else None,
        )
    state = State(data / "state.db")
    outbox = Outbox(data / "alerts.db")

    alerter = Alerter(config.alerts, zone, outbox, alert_chats(config), wake=lambda: ops.wake_bot())
    watchers = Watchers(config, zone, clock.now())
    channels = Channels(config, outbox, clock)
    teller = Teller(alerter, clock, zone, rollups, usage_log, config.storage.min_free_mb, channels)
    budget = Budget(caps_from_config(config), zone, notify=teller.budget_event)
    # Spend this day and month so far, from the durable records: a restart never resets a budget.
    budget.seed(clock.now(), rollups.spend_since)
    pricer = Pricer(config.prices)
    canary = Canary(config, state, clock, zone, teller.alert)
    meter = Meter(config)
    loops = Loops(config)

    def observe(record: Record) -> None:  # every record, just after it is written: counters and the anomaly watch
        meter.observe(record)
        ops.saw(record)  # the page's recent calls
        now = clock.now()
        watchers.observe(record, now)
        if (loop := loops.observe(record, now)) is not None:
            teller.alert_later(loop)

    gateway = Gateway(
        config,
        clock=clock,
        pricer=pricer,
        recorder=Recorder(usage_log, rollups, observe=observe),
        budget=budget,
        state=state,
        status_extra=lambda: ops.status(),
        alert=teller.alert_later,
        canary_token=canary.token,
        run_canary=lambda: ops.run_canary(),
        metrics=lambda: ops.metrics(),
        known_workflows=lambda: ops.known_workflows(),
        page=lambda scope, receive: page(scope, receive),
    )
    teller.rebuilt((("rollups", rollups), ("state", state), ("alerts", outbox)))
    ops = Operations(
        config,
        clock,
        zone,
        budget=budget,
        rollups=rollups,
        state=state,
        outbox=outbox,
        usage_log=usage_log,
        canary=canary,
        gateway=gateway,
        alerter=alerter,
        alerts=teller.recent,
        meter=meter,
        watchers=watchers,
        channels=channels,
    )
    page = Page(ops, gateway.admin.tries)  # one count of wrong admin tokens for the control routes and the login
    reloadable = (pricer, gateway, alerter, watchers, teller, canary, meter, ops, loops)
    return Parts(
        config, clock, zone, usage_log, rollups, state, outbox, alerter, watchers, teller, budget, pricer,
        canary, meter, gateway, ops, reloadable, channels,
    )  # fmt: skip
