"""Budget arithmetic: caps per scope and calendar period, worst-case reservations, settlement. Pure.

Before a call goes upstream its worst-case cost is reserved against every cap that applies; a call
whose worst case does not fit in what is left is refused. After the answer, the reservation is
settled to the real cost. So concurrent calls cannot pass a cap together. Money is counted in
integer picodollars: sums are exact and a cap is never passed by rounding.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

from picometer.config import Config
from picometer.duration import seconds_until
from picometer.frozen import frozen
from picometer.local_time import period_key, period_start, resets_at
from picometer.numbers import money

PICO = 10**12
PERIODS = ("day", "month")
GLOBAL = "global"


def to_pico(usd: float) -> int:
    return round(usd * PICO)


def to_usd(pico: int) -> float:
    return pico / PICO


def scope_of(workflow: str | None) -> str:
    return GLOBAL if workflow is None else f"workflow:{workflow}"


@dataclass(frozen=True, slots=True)
class Cap:
    scope: str  # "global" or "workflow:NAME"
    period: str  # "day" | "month"
    limit: int  # picodollars; 0: no cap, spend is only tracked
    block: bool  # on_exceed = "block" (or "downgrade"); False: meter and announce, never refuse
    alert_at: tuple[float, ...] = ()
    downgrade_to: str | None = None  # on_exceed = "downgrade": the "provider/model" a refused call may go to

    @property
    def name(self) -> str:
        return f"{self.scope}/{self.period}"

    @property
    def workflow(self) -> str | None:
        return None if self.scope == GLOBAL else self.scope.removeprefix("workflow:")


def caps_from_config(config: Config) -> dict[str | None, tuple[Cap, Cap]]:
    """(day, month) caps for the global scope (key None) and each configured workflow."""
    b = config.budgets
    block = b.on_exceed != "alert"
    down = (b.downgrade_to or None) if b.on_exceed == "downgrade" else None
    out: dict[str | None, tuple[Cap, Cap]] = {
        None: (
            Cap(GLOBAL, "day", to_pico(b.daily_usd), block, tuple(sorted(b.alert_at)), down),
            Cap(GLOBAL, "month", to_pico(b.monthly_usd), block, tuple(sorted(b.alert_at)), down),
        )
    }
    for name, w in config.workflows.items():
        policy = w.on_exceed or b.on_exceed
        down = (w.downgrade_to or b.downgrade_to or None) if policy == "downgrade" else None
        alert_at = tuple(sorted(b.alert_at if w.alert_at is None else w.alert_at))
        scope = scope_of(name)
        out[name] = (
            Cap(scope, "day", to_pico(w.daily_usd), policy != "alert", alert_at, down),
            Cap(scope, "month", to_pico(w.monthly_usd), policy != "alert", alert_at, down),
        )
    return out


# ---------------------------------------------------------------- ledgers


class Ledger:
    """One cap's running state for its current period."""

    __slots__ = ("blocked_announced", "cap", "downgrade_announced", "ends", "fired", "key", "reserved", "spent")

    def __init__(self, cap: Cap) -> None:
        self.cap = cap
        self.key: date | None = None
        self.ends: datetime | None = None  # when the period `key` names is over
        self.spent = 0
        self.reserved = 0
        self.fired: set[float] = set()
        self.blocked_announced = False
        self.downgrade_announced = False

    def roll(self, key: date) -> None:
        # Periods only move forward: a wall clock that jumps back stays in the newest period seen.
        if self.key is None or key > self.key:
            self.key, self.spent, self.reserved, self.ends = key, 0, 0, None
            self.fired = set()
            self.blocked_announced = False
            self.downgrade_announced = False

    def roll_to(self, now: datetime, zone: tzinfo) -> None:
        """roll() into the period holding `now`: within the period already held, one comparison."""
        if self.ends is not None and now < self.ends:
            return  # also when the wall clock went back: periods only move forward
        self.roll(period_key(self.cap.period, now, zone))
        assert self.key is not None
        self.ends = resets_at(self.cap.period, self.key, zone)

    def room(self) -> int:
        return self.cap.limit - self.spent - self.reserved

    def passed(self) -> set[float]:
        """The alert_at thresholds the spend has reached."""
        return {t for t in self.cap.alert_at if self.cap.limit and self.spent >= t * self.cap.limit}


@frozen
class Hold:
    """A reservation: `amount` picodollars held on each ledger, for the period it was made in."""

    amount: int
    entries: tuple[tuple[Ledger, date], ...]
    over: Cap | None = None  # an alert-only cap this call runs past


@dataclass(frozen=True, slots=True)
class Refused:
    cap: Cap
    spent: int
    reserved: int
    worst: int
    resets_at: datetime  # UTC


@dataclass(frozen=True, slots=True)
class Event:
    """Something the alert system wants to hear about: a threshold crossed, or the first refusal."""

    kind: str  # "threshold" | "blocked" | "downgrade"
    cap: Cap
    spent: int
    at: datetime
    threshold: float | None = None
    held: int = 0  # reserved by calls in flight when it happened
    worst: int = 0  # the worst case of the call that was refused


class Budget:
    """Every cap's ledger. `notify` hears threshold crossings and the first refusal per cap and period."""

    def __init__(
        self,
        caps: Mapping[str | None, tuple[Cap, Cap]],
        zone: tzinfo,
        notify: Callable[[Event], None] | None = None,
    ) -> None:
        self.zone = zone
        self.notify = notify or (lambda event: None)
        self._use({workflow: tuple(Ledger(c) for c in pair) for workflow, pair in caps.items()})

    def _use(self, ledgers: dict[str | None, tuple[Ledger, ...]]) -> None:
        self._ledgers = ledgers
        self._global = ledgers[None]
        # Worst cases are computed only where some cap can refuse: the common no-cap path stays free.
        self._guarded = {w for w, ls in ledgers.items() if any(lg.cap.limit and lg.cap.block for lg in ls)}

    def ledgers(self) -> list[Ledger]:
        return [lg for pair in self._ledgers.values() for lg in pair]

    def applicable(self, workflow: str) -> tuple[Ledger, ...]:
        own = self._ledgers.get(workflow)
        return self._global + own if own is not None else self._global

    def caps(self, workflow: str | None = None) -> tuple[Cap, Cap]:
        day, month = self._ledgers[workflow]
        return day.cap, month.cap

    def spent(self, now: datetime, workflow: str | None = None) -> tuple[int, int]:
        """Picodollars spent this day and this month, globally or by one configured workflow."""
        day, month = self._ledgers[workflow]
        day.roll(period_key("day", now, self.zone))
        month.roll(period_key("month", now, self.zone))
        return day.spent, month.spent

    def capped(self, workflow: str) -> bool:
        """True when any dollar cap (blocking or alert-only) applies to this workflow's calls."""
        return any(lg.cap.limit for lg in self.applicable(workflow))

    def guards(self, workflow: str) -> bool:
        """True when a cap could refuse this workflow's calls (so a worst case is worth computing)."""
        return None in self._guarded or workflow in self._guarded

    def roll(self, now: datetime) -> None:
        for lg in self.ledgers():
            lg.roll_to(now, self.zone)

    def seed(self, now: datetime, spent_since: Callable[[datetime, str | None], float]) -> None:
        """Start from what the durable records say was spent this period; thresholds passed are not re-announced."""
        self.roll(now)
        for lg in self.ledgers():
            self._seed(lg, spent_since)

    def _seed(self, lg: Ledger, spent_since: Callable[[datetime, str | None], float]) -> None:
        assert lg.key is not None
        lg.spent = to_pico(spent_since(period_start(lg.key, self.zone), lg.cap.workflow))
        lg.fired = lg.passed()
        lg.blocked_announced = bool(lg.cap.limit) and lg.spent >= lg.cap.limit

    def reconfigure(
        self,
        caps: Mapping[str | None, tuple[Cap, Cap]],
        now: datetime,
        spent_since: Callable[[datetime, str | None], float],
    ) -> None:
        """New caps, same money: a scope and period that stay keep its ledger, its spend and the holds of calls
        in flight; a new workflow starts from the durable records. Thresholds already passed are not told again."""
        old = {lg.cap.name: lg for lg in self.ledgers()}
        fresh: list[Ledger] = []
        ledgers: dict[str | None, tuple[Ledger, ...]] = {}
        for workflow, pair in caps.items():
            row = []
            for cap in pair:
                lg = old.get(cap.name)
                if lg is None:
                    lg = Ledger(cap)
                    fresh.append(lg)
                else:
                    lg.cap = cap
                    lg.fired = {t for t in lg.fired if t in cap.alert_at} | lg.passed()
                row.append(lg)
            ledgers[workflow] = tuple(row)
        self._use(ledgers)
        self.roll(now)
        for lg in fresh:
            self._seed(lg, spent_since)

    def reserve(self, workflow: str, worst: int, now: datetime, *, may_downgrade: bool = False) -> Hold | Refused:
        """Hold `worst` picodollars on every applicable cap, or refuse if it does not fit in one of them.
        `may_downgrade`: a refusal by a cap with a downgrade model is not announced (the caller tries that next)."""
        ledgers = self.applicable(workflow)
        for lg in ledgers:
            lg.roll_to(now, self.zone)
        # Caps this call does not fit in; one at its limit already counts (an alert-only cap run past).
        refusals = [lg for lg in ledgers if lg.cap.limit and (worst > lg.room() or lg.room() < 0)]
        if worst > 0:  # a free call is never refused by a dollar cap
            blocking = [lg for lg in refusals if lg.cap.block]
            if blocking:
                # The call can go only once every blocking cap has reset: name the one that resets last.
                lg = max(blocking, key=lambda x: (x.cap.period == "month", x.cap.scope != GLOBAL))
                assert lg.key is not None
                if not lg.blocked_announced and not (may_downgrade and lg.cap.downgrade_to):
                    lg.blocked_announced = True
                    self.notify(Event("blocked", lg.cap, lg.spent, now, held=lg.reserved, worst=worst))
                when = max(resets_at(x.cap.period, x.key, self.zone) for x in blocking if x.key is not None)
                return Refused(lg.cap, lg.spent, lg.reserved, worst, when)
        over = next((lg.cap for lg in refusals if not lg.cap.block), None)
        for lg in ledgers:
            lg.reserved += worst
        return Hold(worst, tuple((lg, lg.key) for lg in ledgers if lg.key is not None), over)

    def downgraded(self, refused: Refused, now: datetime) -> None:
        """A call went to the cap's downgrade model: announced once per cap and period."""
        for lg in self.applicable(refused.cap.workflow or ""):
            if lg.cap == refused.cap and not lg.downgrade_announced:
                lg.downgrade_announced = True
                self.notify(Event("downgrade", lg.cap, lg.spent, now, held=lg.reserved, worst=refused.worst))

    def settle(self, hold: Hold, cost: int, now: datetime) -> None:
        """Release the reservation and count the real cost, in the period the call was reserved in."""
        for lg, key in hold.entries:
            if lg.key != key:
                continue  # that period is over; the spend stays with it (as in the records)
            lg.reserved -= hold.amount
            lg.spent += cost
            if lg.cap.limit:
                for t in lg.cap.alert_at:
                    if t not in lg.fired and lg.spent >= t * lg.cap.limit:
                        lg.fired.add(t)
                        self.notify(Event("threshold", lg.cap, lg.spent, now, t))


# ---------------------------------------------------------------- forecasts and words


def forecast(spent: int, limit: int, per_hour: float, now: datetime, reset: datetime) -> datetime | None:
    """When the cap is reached at `per_hour` picodollars an hour, if that is before it resets."""
    if not limit:
        return None
    if spent >= limit:
        return now
    if per_hour <= 0:
        return None
    at = now + timedelta(hours=(limit - spent) / per_hour)
    return at if at < reset else None


def cap_status(
    cap: Cap, key: date, spent: int, reserved: int, per_hour: int, now: datetime, zone: tzinfo
) -> dict[str, Any]:
    """One cap as plain data for /-/status, report and metrics; `per_hour` is the last hour's pace."""
    reset = resets_at(cap.period, key, zone)
    reach = forecast(spent, cap.limit, per_hour, now, reset)
    return {
        "scope": cap.scope,
        "period": cap.period,
        "limit_usd": to_usd(cap.limit),
        "spent_usd": round(to_usd(spent), 9),
        "reserved_usd": round(to_usd(reserved), 9),
        "used": round(spent / cap.limit, 4) if cap.limit else None,
        "on_exceed": ("downgrade" if cap.downgrade_to else "block") if cap.block else "alert",
        "resets_at": reset.astimezone(zone).isoformat(timespec="minutes"),
        "pace_usd_per_hour": round(to_usd(per_hour), 9),
        "cap_reached_at": None if reach is None else reach.astimezone(zone).isoformat(timespec="minutes"),
        "forecast": pace_phrase(cap, spent, per_hour, reach, zone),
    }


def pace_phrase(cap: Cap, spent: int, per_hour: int, reach: datetime | None, zone: tzinfo) -> str:
    period = "daily" if cap.period == "day" else "monthly"
    if not cap.limit:
        return f"no {period} cap"
    if spent >= cap.limit:
        return f"the {period} cap is reached"
    if per_hour <= 0:
        return "nothing spent in the last hour"
    pace = f"at the last hour's pace ({usd(per_hour)}/h)"
    if reach is None:
        return f"{pace} the {period} cap holds until it resets"
    fmt = "%H:%M" if cap.period == "day" else "%b %d %H:%M"
    return f"{pace} the {period} cap is reached at {reach.astimezone(zone).strftime(fmt)}"


def event_message(event: Event, per_hour: int, zone: tzinfo) -> str:
    """What happened, in words an operator can act on."""
    cap, now = event.cap, event.at
    assert cap.limit
    key = period_key(cap.period, now, zone)
    reset = resets_at(cap.period, key, zone).astimezone(zone)
    if event.kind == "blocked":
        held = f", {usd(event.held)} held by calls in flight" if event.held else ""
        return (
            f"{describe_scope(cap)} ({usd(cap.limit)}) is refusing calls: {usd(event.spent)} spent{held}, "
            f"and a call that could cost up to {usd(event.worst)} does not fit. "
            f"It resets at {reset:%Y-%m-%d %H:%M %Z}; raise {cap_key(cap)} to let calls through sooner."
        )
    if event.kind == "downgrade":
        return (
            f"{describe_scope(cap)} ({usd(cap.limit)}) would be passed at the models asked for "
            f"({usd(event.spent)} spent): calls now go to {cap.downgrade_to} while that fits, then are refused. "
            f"It resets at {reset:%Y-%m-%d %H:%M %Z}; raise {cap_key(cap)} to go back to the models asked for."
        )
    share = round((event.threshold or 0) * 100)
    text = f"{describe_scope(cap)} is {share}% used: {usd(event.spent)} of {usd(cap.limit)}"
    if event.spent >= cap.limit and not cap.block:
        return text + " (on_exceed = alert: calls go on)."
    reach = forecast(event.spent, cap.limit, per_hour, now, reset)
    return f"{text}; {pace_phrase(cap, event.spent, per_hour, reach, zone)}."


def usd(pico: int | float) -> str:
    """Dollars for people: cents for big amounts, more digits for sub-cent ones."""
    return money(pico / PICO)


def describe_scope(cap: Cap) -> str:
    period = "daily" if cap.period == "day" else "monthly"
    return f"the global {period} cap" if cap.workflow is None else f"the {period} cap of workflow {cap.workflow!r}"


def refusal_message(r: Refused, now: datetime, zone: tzinfo) -> str:
    local_reset = r.resets_at.astimezone(zone)
    wait = seconds_until(r.resets_at, now)
    hours, rest = divmod(wait, 3600)
    text = (
        f"budget exceeded: {describe_scope(r.cap)} is {usd(r.cap.limit)}; spent {usd(r.spent)}"
        + (f", {usd(r.reserved)} held by calls in flight" if r.reserved else "")
        + f"; this call could cost up to {usd(r.worst)}. "
    )
    if r.worst > r.cap.limit:
        text += "That is more than the whole cap: lower max_tokens or raise the cap. "
    return text + (
        f"It resets at {local_reset:%Y-%m-%d %H:%M %Z} (in {hours}h {rest // 60:02d}m); "
        f"to go on sooner, raise {cap_key(r.cap)} in the config."
    )


def cap_key(cap: Cap) -> str:
    table = "[budgets]" if cap.workflow is None else f"[workflows.{cap.workflow}]"
    return f"{table}.{'daily_usd' if cap.period == 'day' else 'monthly_usd'}"
