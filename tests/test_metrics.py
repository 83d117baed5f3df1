"""GET /metrics: parsed with prometheus-client's own parser, counters held against the usage records,
bounded labels; the Grafana dashboard and the alert rules only query metrics that exist, and promtool
accepts the rules."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from picometer.reports.metrics import EXTRA_WORKFLOWS_MAX
from tests.servers import GatewayServer

ROOT = Path(__file__).resolve().parent.parent
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str, headers: dict[str, str] | None = None) -> Samples:
    answer = httpx.get(f"{url}/metrics", headers=headers or {}, trust_env=False)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(answer.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def series(samples: Samples, name: str, **match: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        labels: v for (n, labels), v in samples.items() if n == name and all((k, m) in labels for k, m in match.items())
    }


def chat(url: str, workflow: str, content: str, headers: dict[str, str] | None = None, **extra: Any) -> int:
    answer = httpx.post(
        f"{url}/w/{workflow}/openai/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}], **extra},
        headers=headers or {},
        trust_env=False,
        timeout=30,
    )
    return answer.status_code


def test_metrics_counters_match_the_usage_records(make_gateway: Callable[..., GatewayServer]) -> None:
    server = make_gateway(
        workflows={"digest": {"daily_usd": 1.0}, "paused": {}},
        retry={"base_delay_s": 0.01, "max_delay_s": 0.05},
        canary={"probes": [{"name": "mini", "provider": "openai", "model": "gpt-4o-mini"}]},
    )
    httpx.post(f"{server.url}/-/pause/paused", trust_env=False)
    statuses = []
    for i in range(12):
        statuses.append(chat(server.url, "digest", f"q{i}"))
    statuses.append(chat(server.url, "digest", "bad", {"x-sim-fault": "http400"}))
    statuses.append(chat(server.url, "digest", "flaky", {"x-sim-fault": "http503", "x-sim-fail-first": "1"}))
    statuses.append(chat(server.url, "digest", "streamed", stream=True, stream_options={"include_usage": True}))
    statuses.append(chat(server.url, "paused", "refused"))
    statuses.append(chat(server.url, "adhoc", "emoji 🦜", {"x-sim-cached": "3"}))
    assert httpx.post(f"{server.url}/-/canary", trust_env=False, timeout=30).json()["ok"]
    records = server.records(wait_for=len(statuses) + 1)
    server.daemon.rollups.flush()  # the objectives read the rollups, which take up to 2 s to be written
    samples = scrape(server.url)

    counted: Counter[tuple[str, str, str, str]] = Counter()
    tokens: dict[tuple[str, str], int] = defaultdict(int)
    cost: dict[str, float] = defaultdict(float)
    for r in records:
        counted[(r["workflow"], r["provider"], r["model"], r["status"])] += 1
        for kind in ("input", "cached_input", "cache_write", "output", "reasoning"):
            tokens[(r["workflow"], kind)] += r[f"{kind}_tokens"]
        cost[r["workflow"]] += r["cost_usd"] or 0.0
    got = {
        (dict(k)["workflow"], dict(k)["provider"], dict(k)["model"], dict(k)["status"]): v
        for k, v in series(samples, "picometer_requests_total").items()
    }
    assert got == counted
    assert {(w, s) for w, _, _, s in counted} >= {("digest", "ok"), ("digest", "error"), ("paused", "blocked")}
    for (workflow, kind), n in tokens.items():
        assert sum(series(samples, "picometer_tokens_total", workflow=workflow, type=kind).values()) == n
    for workflow, dollars in cost.items():
        assert sum(series(samples, "picometer_cost_usd_total", workflow=workflow).values()) == pytest.approx(dollars)
    assert sum(series(samples, "picometer_request_duration_seconds_count").values()) == len(records)
    total_s = sum(r["latency_ms"] for r in records) / 1000
    assert sum(series(samples, "picometer_request_duration_seconds_sum").values()) == pytest.approx(total_s)
    assert sum(series(samples, "picometer_retries_total", provider="openai").values()) == sum(
        r["attempts"] - 1 for r in records if r["attempts"]
    )
    assert series(samples, "picometer_canary_up") == {(("probe", "mini"),): 1.0}
    assert series(samples, "picometer_budget_limit_usd") == {(("period", "day"), ("scope", "workflow:digest")): 1.0}
    spent = series(samples, "picometer_budget_spent_usd")[(("period", "day"), ("scope", "workflow:digest"))]
    assert spent == pytest.approx(cost["digest"])
    assert samples[("picometer_usage_log_bytes", ())] == server.daemon.usage_log.total_bytes()
    assert samples[("picometer_usage_records_dropped_total", ())] == 0
    left = series(samples, "picometer_slo_error_budget_left", workflow="digest", sli="success")
    assert list(left.values()) == [pytest.approx(1 - 1 / (0.01 * 15), abs=1e-4)]  # 1 error in 15 calls


def test_header_supplied_workflow_names_fold_into_other_past_the_limit(
    make_gateway: Callable[..., GatewayServer],
) -> None:
    server = make_gateway(workflows={"digest": {}})
    names = [f"job-{i}" for i in range(EXTRA_WORKFLOWS_MAX + 15)]
    for name in names:
        assert chat(server.url, name, "hi") == 200
    assert chat(server.url, "digest", "hi") == 200
    server.records(wait_for=len(names) + 1)
    requests = series(scrape(server.url), "picometer_requests_total")
    workflows = Counter(dict(k)["workflow"] for k in requests)
    assert len(workflows) == EXTRA_WORKFLOWS_MAX + 2, "the configured one, the first 20 others, and other"
    assert requests[(("model", "gpt-4o-mini"), ("provider", "openai"), ("status", "ok"), ("workflow", "other"))] == 15
    assert sum(requests.values()) == len(names) + 1, "folded, not lost"


def test_metrics_need_the_admin_token_when_one_is_set(make_gateway: Callable[..., GatewayServer]) -> None:
    server = make_gateway(env={"PM_ADMIN": "admin-secret-for-tests"}, server={"admin_token": "env:PM_ADMIN"})
    assert httpx.get(f"{server.url}/metrics", trust_env=False).status_code == 401
    assert scrape(server.url, {"authorization": "Bearer admin-secret-for-tests"}) is not None


# ---------------------------------------------------------------- dashboard and rules


def metric_names(server: GatewayServer) -> set[str]:
    """Every series name /metrics exposes, with a histogram's _bucket/_sum/_count."""
    return {name for name, _ in scrape(server.url)}


def queried(expressions: list[str]) -> set[str]:
    return {m for e in expressions for m in re.findall(r"\bpicometer_[a-z_]+\b", e)}


def test_every_metric_the_dashboard_and_the_rules_query_exists(make_gateway: Callable[..., GatewayServer]) -> None:
    server = make_gateway(
        workflows={"digest": {"daily_usd": 1.0, "slo_latency_s": 60}},
        canary={"probes": [{"name": "mini", "provider": "openai", "model": "gpt-4o-mini"}]},
        retry={"base_delay_s": 0.01},
    )
    chat(server.url, "digest", "flaky", {"x-sim-fault": "http503", "x-sim-fail-first": "1"})
    httpx.post(f"{server.url}/-/canary", trust_env=False, timeout=30)
    server.daemon.alerter.told["budget_threshold"] = 1  # a kind told: the counter has a sample
    server.records(wait_for=2)
    exposed = metric_names(server)
    dashboard = json.loads((ROOT / "contrib/grafana/picometer.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 8
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("cost", "model", "tokens", "latency", "errors", "retries", "budget", "canary"):
        assert topic in titles, f"the dashboard shows {topic}"
    rules = (ROOT / "contrib/prometheus/alerts.yml").read_text()
    rule_exprs = re.findall(r"expr: (.+)", rules)
    assert rule_exprs
    missing = queried(exprs + rule_exprs) - exposed
    assert not missing, f"queried but not exposed: {missing}"


def test_promtool_accepts_the_alert_rules() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is installed by .ci/run (Debian package prometheus)"
    result = subprocess.run(
        [promtool, "check", "rules", str(ROOT / "contrib/prometheus/alerts.yml")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
