"""Prometheus metrics (`GET /metrics`).

Calls are counted on the record path with plain arithmetic; metric families are built only when
/metrics is scraped, and prometheus-client is imported then, not at start. Counters count from the
start of the process, as Prometheus expects (it handles the reset at a restart).

Label values are bounded, so a client sending a new X-Picometer-Workflow on every call cannot grow
memory or the scrape: workflows are the configured ones, "untagged", "canary", and the first
EXTRA_WORKFLOWS_MAX others seen; models the first MODELS_MAX seen; providers the configured ones; reasons
(of a fallback, of a refusal) the first REASONS_MAX seen. Anything beyond is counted under "other".
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from picometer.config import Config
from picometer.metering.tokens import METRIC_TYPES
from picometer.record import Record

DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
EXTRA_WORKFLOWS_MAX = 20
MODELS_MAX = 50
REASONS_MAX = 30  # picometer names a few dozen causes at most; a bound all the same
OTHER = "other"
STATUSES = ("ok", "error", "blocked")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # the text format every Prometheus version reads
TOKEN_TYPES = tuple(kind for kind, _ in METRIC_TYPES)

SeriesKey = tuple[str, str, str]  # workflow, provider, model
FallbackKey = tuple[str, str, str]  # the provider and model that failed, why


class Series:
    """Everything counted for one workflow x provider x model."""

    __slots__ = ("buckets", "cost", "duration_sum", "requests", "tokens")

    def __init__(self) -> None:
        self.requests = [0, 0, 0]  # by STATUSES
        self.tokens = [0] * len(TOKEN_TYPES)
        self.cost = 0.0
        self.buckets = [0] * (len(DURATION_BUCKETS) + 1)  # per bucket, not cumulative; the last is +Inf
        self.duration_sum = 0.0


@dataclass
class Gauges:
    """What is read from the daemon at scrape time."""

    retries: Mapping[str, Mapping[str, int]] = field(default_factory=dict)  # provider -> reason -> count
    budgets: Iterable[Mapping[str, Any]] = ()  # Daemon.budgets()
    canary: Mapping[str, bool] = field(default_factory=dict)  # probe -> last run passed
    alerts_sent: Mapping[str, int] = field(default_factory=dict)  # kind -> count
    usage_log_bytes: int = 0
    records_dropped: int = 0
    objectives: Iterable[Mapping[str, Any]] = ()  # Daemon.objectives()


class Bounded:
    """Label values kept as first seen, up to a limit; later ones count as OTHER."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.seen: set[str] = set()

    def fold(self, name: str, known: frozenset[str] = frozenset()) -> str:
        if name in known or name in self.seen:
            return name
        if len(self.seen) < self.limit:
            self.seen.add(name)
            return name
        return OTHER


class Meter:
    def __init__(self, config: Config) -> None:
        self.series: dict[SeriesKey, Series] = {}
        self.cache_hits: dict[str, int] = {}  # workflow -> calls answered from the cache
        self.cost_saved: dict[str, float] = {}  # workflow -> dollars those answers did not cost again
        self.fallbacks: dict[FallbackKey, int] = {}
        self.refusals: dict[str, int] = {}  # the refusal's code -> calls
        self._extra_workflows = Bounded(EXTRA_WORKFLOWS_MAX)
        self._models = Bounded(MODELS_MAX)
        self._fallback_reasons = Bounded(REASONS_MAX)
        self._refusal_reasons = Bounded(REASONS_MAX)
        self.reconfigure(config)

    def reconfigure(self, config: Config) -> None:
        self._workflows = frozenset(config.workflows) | {"untagged", "canary"}
        self._providers = frozenset(config.providers)

    def observe(self, rec: Record) -> None:
        """Count one finished call (on the hot path: a few list updates)."""
        key = (self._extra_workflows.fold(rec.workflow, self._workflows),
               rec.provider if rec.provider in self._providers else OTHER,
               self._models.fold(rec.model or ""))  # fmt: skip
        s = self.series.get(key)
        if s is None:
            s = self.series[key] = Series()
        s.requests[STATUSES.index(rec.status) if rec.status in STATUSES else 1] += 1
        for i, (_, name) in enumerate(METRIC_TYPES):
            s.tokens[i] += getattr(rec, name)
        s.cost += rec.cost_usd or 0.0
        seconds = rec.latency_ms / 1000
        s.buckets[bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1
        s.duration_sum += seconds
        if rec.cache_hit:
            self.cache_hits[key[0]] = self.cache_hits.get(key[0], 0) + 1
            self.cost_saved[key[0]] = self.cost_saved.get(key[0], 0.0) + (rec.cost_saved_usd or 0.0)
        if rec.fallback_from:
            failed = self._fallback_key(rec.fallback_from, getattr(rec, "fallback_reason", None))
            self.fallbacks[failed] = self.fallbacks.get(failed, 0) + 1
        if rec.status == "blocked":
            reason = self._refusal_reasons.fold(rec.error_type or "unknown")
            self.refusals[reason] = self.refusals.get(reason, 0) + 1

    def _fallback_key(self, asked: str, reason: str | None) -> FallbackKey:
        """The provider and model that failed, from "provider/model" (a model name may hold "/" itself)."""
        provider, _, model = asked.partition("/")
        return (provider if provider in self._providers else OTHER,
                self._models.fold(model),
                self._fallback_reasons.fold(reason or "unknown"))  # fmt: skip


def exposition(meter: Meter, gauges: Gauges) -> tuple[bytes, str]:
    """The text format and its content type."""
    from prometheus_client.exposition import generate_latest
    from prometheus_client.registry import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(meter, gauges))
    return generate_latest(registry), CONTENT_TYPE


class _Collector:
    def __init__(self, meter: Meter, gauges: Gauges) -> None:
        self.meter, self.gauges = meter, gauges

    def collect(self) -> Iterable[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        dims = ["workflow", "provider", "model"]
        requests = CounterMetricFamily("picometer_requests", "Calls by outcome", labels=[*dims, "status"])
        tokens = CounterMetricFamily("picometer_tokens", "Tokens by type", labels=[*dims, "type"])
        cost = CounterMetricFamily("picometer_cost_usd", "Metered cost in US dollars", labels=dims)
        duration = HistogramMetricFamily(
            "picometer_request_duration_seconds", "Call latency as the client saw it", labels=dims
        )
        for key, s in sorted(self.meter.series.items()):
            labels = list(key)
            for status, n in zip(STATUSES, s.requests, strict=True):
                if n:
                    requests.add_metric([*labels, status], n)
            for kind, n in zip(TOKEN_TYPES, s.tokens, strict=True):
                tokens.add_metric([*labels, kind], n)
            cost.add_metric(labels, s.cost)
            cumulative, seen = [], 0
            for bound, n in zip([*map(str, DURATION_BUCKETS), "+Inf"], s.buckets, strict=True):
                seen += n
                cumulative.append((bound, float(seen)))
            duration.add_metric(labels, cumulative, s.duration_sum)
        yield from (requests, tokens, cost, duration)
        yield from self._substitutes()

        g = self.gauges
        retries = CounterMetricFamily("picometer_retries", "Retries upstream, by cause", labels=["provider", "reason"])
        for provider, by_reason in sorted(g.retries.items()):
            for reason, n in sorted(by_reason.items()):
                retries.add_metric([provider, reason], n)
        spent = GaugeMetricFamily("picometer_budget_spent_usd", "Spend this period", labels=["scope", "period"])
        limit = GaugeMetricFamily("picometer_budget_limit_usd", "The cap this period", labels=["scope", "period"])
        for cap in g.budgets:
            spent.add_metric([cap["scope"], cap["period"]], cap["spent_usd"])
            limit.add_metric([cap["scope"], cap["period"]], cap["limit_usd"])
        canary = GaugeMetricFamily(
            "picometer_canary_up",
            "0 when the probe's last run failed; 1 passed, or skipped by a cap or pause",
            labels=["probe"],
        )
        for probe, ok in sorted(g.canary.items()):
            canary.add_metric([probe], 1.0 if ok else 0.0)
        alerts = CounterMetricFamily("picometer_alerts_sent", "Alerts told, by kind", labels=["kind"])
        for kind, n in sorted(g.alerts_sent.items()):
            alerts.add_metric([kind], n)
        log_bytes = GaugeMetricFamily("picometer_usage_log_bytes", "Bytes the usage log files take on disk")
        log_bytes.add_metric([], g.usage_log_bytes)
        dropped = CounterMetricFamily("picometer_usage_records_dropped", "Usage log lines not written (disk full)")
        dropped.add_metric([], g.records_dropped)
        budget_left = GaugeMetricFamily(
            "picometer_slo_error_budget_left",
            "Share of the 28-day error budget not used (1 untouched, below 0 overspent)",
            labels=["workflow", "sli"],
        )
        objective = GaugeMetricFamily("picometer_slo_target", "The objective's target ratio", labels=["workflow"])
        for o in g.objectives:
            objective.add_metric([o["workflow"]], o["target"])
            for sli in ("success", "latency"):
                if sli in o:
                    budget_left.add_metric([o["workflow"], sli], o[sli]["budget_left"])
        yield from (retries, spent, limit, canary, alerts, log_bytes, dropped, budget_left, objective)

    def _substitutes(self) -> Iterable[Any]:
        """Answers that stood in for the one asked (cache, fallback), and the calls picometer refused."""
        from prometheus_client.core import CounterMetricFamily

        m = self.meter
        hits = CounterMetricFamily("picometer_cache_hits", "Calls answered from the cache", labels=["workflow"])
        saved = CounterMetricFamily(
            "picometer_cost_saved_usd",
            "What the cached answers cost when first bought, not paid again",
            labels=["workflow"],
        )
        for workflow in sorted({key[0] for key in m.series}):  # every workflow seen: a 0 is a real answer here
            hits.add_metric([workflow], m.cache_hits.get(workflow, 0))
            saved.add_metric([workflow], m.cost_saved.get(workflow, 0.0))
        fallbacks = CounterMetricFamily(
            "picometer_fallbacks",
            "Calls a fallback answered, by the provider and model that failed and why",
            labels=["provider", "model", "reason"],
        )
        for key, n in sorted(m.fallbacks.items()):
            fallbacks.add_metric(list(key), n)
        refusals = CounterMetricFamily("picometer_refusals", "Calls picometer refused, by code", labels=["reason"])
        for reason, n in sorted(m.refusals.items()):
            refusals.add_metric([reason], n)
        yield from (hits, saved, fallbacks, refusals)
