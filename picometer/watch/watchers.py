"""Watchers: keep the last hour of each workflow and provider, hold it against the baseline from the
rollups, and say what is unusual as alerts with the numbers, the likely cause and what to do."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, tzinfo

import structlog

from picometer.alert import Alert, Kind
from picometer.config import Config
from picometer.record import Record
from picometer.watch import anomaly, slo
from picometer.watch.anomaly import Baseline, Recent

log = structlog.get_logger("picometer.watch")

TRACKED_MAX = 200  # workflows watched at once; names beyond (header-supplied) are not watched
VERSION_NEW_S = 2 * 3600  # a prompt_version first seen this recently counts as new


def minute_of(moment: datetime) -> int:
    return int(moment.timestamp()) // 60


class Watchers:
    def reconfigure(self, config: Config) -> None:
        self.config = config

    def __init__(self, config: Config, zone: tzinfo, started: datetime) -> None:
        self.config = config
        self.zone = zone
        self._started = minute_of(started)
        self._workflows: dict[str, Recent] = {}
        self._providers: dict[str, Recent] = {}
        self._asked: dict[str, Recent] = {}  # by the provider a call asked for: its share of calls that fell back
        self._versions: dict[str, dict[str, int]] = {}  # workflow -> prompt_version -> minute first seen
        self.baselines: Mapping[str, Baseline] = {}
        self._full_warned = False
        self._slo: dict[str, slo.Ring] = {}  # configured workflows only: their names are bounded

    def observe(self, rec: Record, now: datetime) -> None:
        """Count one finished call (on the hot path: a few dict updates)."""
        if rec.status == "blocked" or rec.canary:
            return
        minute = minute_of(now)
        error = rec.status == "error"
        retries = max(rec.attempts - 1, 0)
        recent = self._workflows.get(rec.workflow)
        if recent is None and len(self._workflows) < TRACKED_MAX:
            recent = self._workflows[rec.workflow] = Recent()
        elif recent is None and not self._full_warned:
            log.warning("too many workflows to watch; new names are metered but not watched", limit=TRACKED_MAX)
            self._full_warned = True
        if recent is not None:
            recent.add(
                minute,
                cost=rec.cost_usd or 0.0,
                error=error,
                retries=retries,
                input_tokens=rec.input_tokens,
                cached_input_tokens=rec.cached_input_tokens,
                model=rec.model or "",
                prompt=rec.prompt_hash,
                version=rec.prompt_version,
            )
            if rec.prompt_version:
                self._versions.setdefault(rec.workflow, {}).setdefault(rec.prompt_version, minute)
        provider = self._providers.get(rec.provider)
        if provider is None:
            provider = self._providers[rec.provider] = Recent()
        provider.add(minute, cost=rec.cost_usd or 0.0, error=error, retries=retries)
        asked = rec.fallback_from.partition("/")[0] if rec.fallback_from else rec.provider
        if asked in self.config.providers:  # configured names only: bounded
            self._asked.setdefault(asked, Recent()).add(minute, cost=0.0, error=bool(rec.fallback_from), retries=0)
        objective = self.config.workflows.get(rec.workflow)
        if objective is not None:
            ring = self._slo.get(rec.workflow)
            if ring is None:
                ring = self._slo[rec.workflow] = slo.Ring()
            ring.add(minute, error, 0 < objective.slo_latency_s * 1000 < rec.latency_ms)

    def check(self, now: datetime) -> list[Alert]:
        """Every unusual condition holding now (the alert policy tells each once)."""
        minute = minute_of(now)
        alerts: list[Alert] = []
        for name in [n for n, r in self._workflows.items() if r.idle(minute)]:
            del self._workflows[name]  # idle for an hour: nothing left to compare
        for workflow, recent in self._workflows.items():
            alerts += self._check_workflow(workflow, recent, now, minute)
        for provider, recent in self._providers.items():
            alert = self._check_provider(provider, recent, now, minute)
            if alert is not None:
                alerts.append(alert)
        for provider, recent in self._asked.items():
            alert = self._check_fallbacks(provider, recent, now, minute)
            if alert is not None:
                alerts.append(alert)
        for workflow in self._slo:
            alerts += [self._burn_alert(workflow, burn, now) for burn in self.burns(workflow, now)]
        return alerts

    def burns(self, workflow: str, now: datetime) -> list[slo.Burn]:
        """The burn-rate rules a configured workflow breaks now (none after a restart until calls arrive)."""
        objective, ring = self.config.workflows.get(workflow), self._slo.get(workflow)
        if objective is None or ring is None:
            return []
        return slo.burning(ring, minute_of(now), objective.slo_target, objective.slo_latency_s > 0)

    def _burn_alert(self, workflow: str, burn: slo.Burn, now: datetime) -> Alert:
        objective = self.config.workflows[workflow]
        rule, events = burn.rule, burn.events
        what = "failed" if burn.sli == "success" else f"took longer than {objective.slo_latency_s:g} s"
        goal = "succeed" if burn.sli == "success" else f"finish within {objective.slo_latency_s:g} s"
        target = f"{objective.slo_target * 100:g}%"
        lasts = slo.WINDOW_DAYS / burn.long
        scope = f"workflow:{workflow}"
        return Alert(
            rule.kind,
            f"{rule.kind}:{burn.sli}:{scope}",
            f"{self._who(workflow)} is using its error budget {burn.long:,.1f}× too fast: "
            f"{events.bad / events.total:.1%} of calls {what} in the last {_span(rule.long_minutes)} "
            f"({events.bad} of {events.total}; {burn.short:,.1f}× over the last {_span(rule.short_minutes)}), "
            f"against the objective that {target} of calls {goal}. At this rate a whole {slo.WINDOW_DAYS}-day "
            f"error budget lasts {lasts:.1f} days. Do: picometer status shows the provider's circuit and retries; "
            f"if the provider is down, pause the job with /pause {workflow} 1h.",
            now,
            scope,
        )

    def _check_workflow(self, workflow: str, recent: Recent, now: datetime, minute: int) -> list[Alert]:
        cfg = self.config.alerts
        scope = f"workflow:{workflow}"
        who = self._who(workflow)
        out: list[Alert] = []
        storm_window = recent.last(minute, anomaly.STORM_MINUTES)
        storm = anomaly.duplicate_storm(storm_window.prompts, cfg.duplicate_storm)
        if storm is not None:
            prompt, count = storm
            out.append(
                Alert(
                    Kind.DUPLICATE_STORM,
                    f"duplicate_storm:{scope}",
                    f"{who} sent the same prompt (hash {prompt}) {count} times in {anomaly.STORM_MINUTES} minutes: "
                    "likely a duplicated webhook or a client retrying in a loop. "
                    f"Do: check the caller's retries and webhook deliveries; pause it with /pause {workflow} 1h.",
                    now,
                    scope,
                )
            )
        base = self.baselines.get(workflow)
        if base is None:
            return out
        hour_now = now.timestamp() / 3600
        usual_cost = anomaly.expected(base.cost, base.first_hour, base.end_hour, hour_now, self._weekend)
        usual_requests = anomaly.expected(base.requests, base.first_hour, base.end_hour, hour_now, self._weekend)
        if usual_cost is None or usual_requests is None:
            return out  # under two days of history: the budget caps guard it
        short = recent.last(minute, anomaly.RUNAWAY_MINUTES)
        run = anomaly.runaway(short, usual_cost.mean, usual_requests.mean, cfg.runaway_factor, cfg.spike_min_usd)
        if run is not None:
            out.append(
                Alert(
                    Kind.RUNAWAY,
                    f"runaway:{scope}",
                    f"{who} is running away: {_amount(run.what, run.value)} in the last {short.minutes} minutes, "
                    f"usually {_amount(run.what, run.usual)} ({_times(run.factor)}). "
                    + self._cause(base, short, usual_requests.mean, minute, workflow)
                    + f"Do: pause it now with /pause {workflow} 1h, then look at what started it.",
                    now,
                    scope,
                )
            )
        hour = recent.last(minute, 60)
        found = anomaly.spike(hour.cost, usual_cost, cfg.spike_zscore, cfg.spike_min_usd, cfg.spike_min_pct)
        if found is not None:
            out.append(
                Alert(
                    Kind.SPIKE,
                    f"spike:{scope}",
                    f"{who} spent ${found.value:.2f} in the last hour, usually ${found.usual:.2f} at this time of day "
                    f"({_times(found.pct / 100 + 1)}, z-score {found.zscore:.1f}). "
                    + self._cause(base, hour, usual_requests.mean, minute, workflow)
                    + f"Do: check what changed; if it is not intended, pause it with /pause {workflow} 1h.",
                    now,
                    scope,
                )
            )
        return out

    def _check_provider(self, provider: str, recent: Recent, now: datetime, minute: int) -> Alert | None:
        window = recent.last(minute, anomaly.RUNAWAY_MINUTES)
        pct = anomaly.error_rate(window, self.config.alerts.error_rate_pct)
        if pct is None:
            return None
        return Alert(
            Kind.ERROR_RATE,
            f"error_rate:provider:{provider}",
            f"Provider {provider}: {pct:.0f}% of the last {window.requests} calls failed in {window.minutes} minutes "
            f"({window.retries} retries). Do: picometer status shows its circuit and retries; check the provider's "
            "status page and your key's limits.",
            now,
            f"provider:{provider}",
        )

    def fallbacks(self, now: datetime) -> dict[str, dict[str, int]]:
        """By provider asked: its calls over the last 10 minutes, and how many of them its fallbacks answered."""
        minute = minute_of(now)
        windows = {p: r.last(minute, anomaly.RUNAWAY_MINUTES) for p, r in self._asked.items()}
        return {p: {"calls": w.requests, "fell_back": w.errors} for p, w in windows.items() if w.errors}

    def _check_fallbacks(self, provider: str, recent: Recent, now: datetime, minute: int) -> Alert | None:
        window = recent.last(minute, anomaly.RUNAWAY_MINUTES)
        pct = anomaly.error_rate(window, self.config.alerts.error_rate_pct)
        if pct is None:
            return None
        to = ", ".join(self.config.providers[provider].fallback)
        return Alert(
            Kind.FALLBACK,
            f"fallback:provider:{provider}",
            f"Provider {provider} is not answering: {pct:.0f}% of its last {window.requests} calls went to its "
            f"fallback ({to}) in {window.minutes} minutes. The calls were answered; check {provider}'s status page, "
            "key and credit. picometer status shows the fallback rate.",
            now,
            f"provider:{provider}",
        )

    def _who(self, workflow: str) -> str:
        owner = self.config.workflows.get(workflow)
        return f"Workflow {workflow}" + (f" (owner {owner.owner})" if owner and owner.owner else "")

    def _cause(self, base: Baseline, now: anomaly.Activity, usual_calls: float, minute: int, workflow: str) -> str:
        fresh = []
        if minute - self._started >= VERSION_NEW_S // 60:  # right after a start every version looks new
            fresh = [(v, m) for v, m in self._versions.get(workflow, {}).items() if minute - m < VERSION_NEW_S // 60]
        causes = anomaly.likely_causes(base, now, usual_calls, self._hhmm, fresh)
        if not causes:
            return ""
        return "Likely cause: " + "; ".join(causes) + ". "

    def _weekend(self, hour: float) -> bool:
        """Whether the moment (UTC hours since the epoch) falls on a Saturday or Sunday, local time."""
        return datetime.fromtimestamp(hour * 3600, UTC).astimezone(self.zone).weekday() >= 5

    def _hhmm(self, minute: int) -> str:
        return datetime.fromtimestamp(minute * 60, UTC).astimezone(self.zone).strftime("%H:%M")


def _amount(what: str, value: float) -> str:
    return f"${value:.2f}" if what == "spend" else f"{value:,.0f} calls"


def _span(minutes: int) -> str:
    return f"{minutes // 60} h" if minutes % 60 == 0 else f"{minutes} min"


def _times(factor: float) -> str:
    return "first time at this hour" if factor == float("inf") else f"{factor:,.1f}× the usual"
