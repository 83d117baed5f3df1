"""What the cache saved and how often another answer stood in (fallback, downgrade): summed in the rollups from
live records, from a rebuild of the usage log (old lines without the fields count 0) and in an older database
after its migration; shown by `picometer report`, appended to the weekly CSV, and counted on /metrics with
bounded labels, together with the refusals by code."""

from __future__ import annotations

import asyncio
import csv
import html
import io
import json
import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import tomli_w
from prometheus_client.parser import text_string_to_metric_families

from picometer.config import StorageConfig
from picometer.config.load import config_from_dict
from picometer.record import Record, Recorder, rfc3339_ms
from picometer.reports.export import summary, to_csv, week_rows
from picometer.reports.metrics import REASONS_MAX, Gauges, Meter, exposition
from picometer.reports.report import build, render
from picometer.store.rollups import MIGRATIONS, SCHEMA_VERSION, Rollups, totals
from picometer.store.schema import migrate
from picometer.store.usagelog import UsageLog
from picometer.watch.commands import Commands
from tests.cli import run
from tests.clocks import ManualClock
from tests.servers import GatewayServer

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)  # a Monday
BERLIN = ZoneInfo("Europe/Berlin")
CONTRACT_COLUMNS = (
    "week,date,workflow,env,provider,model,requests,ok,errors,blocked,retries,input_tokens,cached_input_tokens,"
    "output_tokens,cost_usd,cost_per_ok_usd,p50_ms,p95_ms,p99_ms"
)
NEW_FIELDS = ("fallback_from", "fallback_reason", "downgraded_from", "cache_hit", "cost_saved_usd")
SUBSTITUTES = ("cache_hits", "cost_saved_usd", "fallbacks", "downgrades")


def call(at: datetime, workflow: str = "digest", **kw: Any) -> Record:
    fields: dict[str, Any] = {"provider": "openai", "model": "gpt-4o-mini", "cost_usd": 0.002, "attempts": 1,
                              "latency_ms": 800.0, "input_tokens": 100, "output_tokens": 20, **kw}  # fmt: skip
    return Record(ts=rfc3339_ms(at), request_id=f"r{at.timestamp()}", workflow=workflow, **fields)


def hit(at: datetime, workflow: str = "digest", saved: float = 0.002) -> Record:
    return call(at, workflow, cache_hit=True, cost_saved_usd=saved, cost_usd=0.0, latency_ms=2.0)


def fell_back(at: datetime, workflow: str = "digest", reason: str | None = "upstream_unavailable") -> Record:
    return call(
        at, workflow, provider="anthropic", model="claude-haiku-4-5", fallback_from="openai/gpt-4o-mini",
        fallback_reason=reason, attempts=3,
    )  # fmt: skip


def downgraded(at: datetime, workflow: str = "nightly") -> Record:
    return call(at, workflow, downgraded_from="openai/gpt-4o", cost_usd=0.0001)


def mixed_day(start: datetime) -> list[Record]:
    """A day's calls of every kind: paid, from the cache, by a fallback, downgraded, refused."""
    at = [start + timedelta(minutes=7 * i) for i in range(10)]
    return [
        call(at[0]), call(at[1]), hit(at[2]), hit(at[3], saved=0.0035), fell_back(at[4]),
        fell_back(at[5], reason=None), downgraded(at[6]), call(at[7], "nightly"),
        call(at[8], "nightly", status="blocked", error_type="budget_exceeded", cost_usd=0.0, attempts=0),
        hit(at[9], "nightly", saved=0.0001),
    ]  # fmt: skip


def expected_sums(records: list[Record]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for r in records:
        sums = out.setdefault(r.workflow, dict.fromkeys(SUBSTITUTES, 0.0))
        sums["cache_hits"] += r.cache_hit
        sums["cost_saved_usd"] += r.cost_saved_usd
        sums["fallbacks"] += r.fallback_from is not None
        sums["downgrades"] += r.downgraded_from is not None
    return out


def substitutes_by_workflow(rollups: Rollups) -> dict[str, dict[str, float]]:
    return {r["key"]: {c: r[c] for c in SUBSTITUTES} for r in rollups.summary(0, 10**7, "workflow")}


def flat(nested: dict[str, dict[str, float]]) -> dict[tuple[str, str], float]:
    """(workflow, column) -> value: what pytest.approx compares."""
    return {(w, c): v for w, sums in nested.items() for c, v in sums.items()}


def storage(tmp: Path) -> StorageConfig:
    return StorageConfig(log_dir=str(tmp / "logs"), data_dir=str(tmp / "data"), min_free_mb=0)


def recorded(tmp: Path, records: list[Record], clock: ManualClock | None = None) -> tuple[Rollups, UsageLog]:
    """The records through the one real path (usage log, then rollups), flushed."""
    usage_log = UsageLog(storage(tmp), clock or ManualClock(T0))
    rollups = Rollups(tmp / "data" / "rollups.db")
    record = Recorder(usage_log, rollups)
    for rec in records:
        record(rec)
    usage_log.sync()
    assert rollups.flush()
    return rollups, usage_log


# ---------------------------------------------------------------- rollups


def test_rollups_sum_cache_hits_savings_fallbacks_and_downgrades_per_series(tmp_path: Path) -> None:
    records = mixed_day(T0)
    rollups, usage_log = recorded(tmp_path, records)
    assert flat(substitutes_by_workflow(rollups)) == pytest.approx(flat(expected_sums(records)))
    assert substitutes_by_workflow(rollups)["digest"] == pytest.approx(
        {"cache_hits": 2, "cost_saved_usd": 0.0055, "fallbacks": 2, "downgrades": 0}
    )
    by_provider = {r["key"]: r for r in rollups.summary(0, 10**7, "provider")}
    assert by_provider["anthropic"]["fallbacks"] == 2, "a fallback counts under the provider that answered"
    assert by_provider["openai"]["fallbacks"] == 0
    hours = {(r["hour"], r["workflow"], r["provider"]): r for r in rollups.hourly(0, 10**7)}
    first = int(T0.timestamp()) // 3600
    assert hours[(first, "digest", "openai")]["cache_hits"] == 2
    assert hours[(first + 1, "nightly", "openai")]["cost_saved_usd"] == pytest.approx(0.0001), "at 13:03"
    assert totals(rollups.summary(0, 10**7, "workflow"))["cost_usd"] == pytest.approx(
        sum(r.cost_usd or 0 for r in records)
    ), "a cache hit costs nothing: the savings are beside the cost, not in it"
    rollups.close()
    again = Rollups(tmp_path / "data" / "rollups.db")
    assert again.replay(usage_log.dir) == 0, "a restart folds nothing twice"
    assert flat(substitutes_by_workflow(again)) == pytest.approx(flat(expected_sums(records)))
    again.close()
    usage_log.close()


def old_line(rec: Record) -> str:
    """The record as a picometer before the cache and fallbacks logged it: none of the new fields."""
    data = json.loads(rec.to_json())
    for name in NEW_FIELDS:
        del data[name]
    return json.dumps(data)


def test_a_rebuild_from_the_log_fills_the_new_columns_and_old_lines_count_zero(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    before = [call(T0 - timedelta(days=1, minutes=i)) for i in range(5)]
    (logs / "usage-20261122-000000.jsonl").write_text("".join(old_line(r) + "\n" for r in before))
    records = mixed_day(T0)
    live, usage_log = recorded(tmp_path / "live", records)  # the live path, for comparison
    live.close()
    for f in sorted(usage_log.dir.iterdir()):  # the new lines after the old ones, as an upgrade leaves them
        shutil.copy(f, logs / f.name)
    usage_log.close()

    fresh = Rollups(tmp_path / "data" / "rollups.db")  # rollups.db gone: everything is folded from the log
    assert fresh.replay(logs) == len(before) + len(records)
    expected = expected_sums(records)
    assert flat(substitutes_by_workflow(fresh)) == pytest.approx(flat(expected))
    yesterday = int(T0.timestamp()) // 3600 - 24
    old = fresh.summary(yesterday - 1, yesterday + 1, "workflow")
    assert [(r["key"], r["requests"]) for r in old] == [("digest", 5)], "the old lines are all there"
    assert {c: old[0][c] for c in SUBSTITUTES} == dict.fromkeys(SUBSTITUTES, 0), "and count none of the new"

    fresh.heal(logs)  # the rebuild a damaged file gets while running: the same sums, once
    assert flat(substitutes_by_workflow(fresh)) == pytest.approx(flat(expected))
    assert totals(fresh.summary(0, 10**7, "workflow"))["requests"] == len(before) + len(records)
    fresh.close()


def old_database(path: Path) -> int:
    """A rollups file as the picometer before this one left it (schema 2), with a day of calls; their hour."""
    assert SCHEMA_VERSION == 3
    db = sqlite3.connect(path, isolation_level=None)
    migrate(db, MIGRATIONS[:2], "rollup")
    hour = int(T0.timestamp()) // 3600
    db.execute("INSERT INTO series (id, workflow, env, provider, model) VALUES (1, 'digest', 'prod', 'openai', 'm')")
    db.execute(
        "INSERT INTO rollup (hour, series, requests, ok, errors, blocked, retries, input_tokens, cached_input_tokens,"
        " cache_write_tokens, output_tokens, reasoning_tokens, cost_usd, unpriced, latency_ms_sum)"
        " VALUES (?, 1, 7, 6, 1, 0, 2, 700, 0, 0, 140, 0, 0.014, 0, 5600.0)",
        (hour,),
    )
    db.execute("INSERT INTO latency (hour, series, bin, count) VALUES (?, 1, 40, 7)", (hour,))
    db.execute("INSERT INTO spend (quarter, workflow, cost_usd) VALUES (?, 'digest', 0.014)", (hour * 4,))
    db.executemany("INSERT INTO meta VALUES (?, ?)", [("watermark_stem", "usage-20261123-120000"),
                                                     ("watermark_offset", "4096")])  # fmt: skip
    db.close()
    return hour


def test_an_older_database_opens_keeps_its_data_and_the_new_columns_start_at_zero(tmp_path: Path) -> None:
    path = tmp_path / "rollups.db"
    hour = old_database(path)
    rollups = Rollups(path)
    (version,) = rollups._db.execute("PRAGMA user_version").fetchone()
    assert version == SCHEMA_VERSION
    assert rollups.watermark is not None and rollups.watermark.offset == 4096, "the watermark is kept"
    [row] = rollups.summary(hour, hour + 1, "workflow")
    assert (row["requests"], row["ok"], row["retries"], row["output_tokens"]) == (7, 6, 2, 140)
    assert row["cost_usd"] == pytest.approx(0.014) and row["bins"] == {40: 7}
    assert {c: row[c] for c in SUBSTITUTES} == dict.fromkeys(SUBSTITUTES, 0)
    assert rollups.spend_since(T0) == pytest.approx(0.014), "budgets still read the month so far"

    same = {"model": "m", "cache_hit": True, "cost_saved_usd": 0.002, "cost_usd": 0.0}
    rollups.add(call(T0 + timedelta(minutes=5), **same), None)  # the same hour and series: added to the old row
    rollups.add(fell_back(T0 + timedelta(minutes=6)), None)
    assert rollups.flush()
    [row] = rollups.summary(hour, hour + 1, "workflow")
    assert row["requests"] == 9 and row["cache_hits"] == 1 and row["fallbacks"] == 1
    assert row["cost_saved_usd"] == pytest.approx(0.002)
    monday = T0.date()
    [old] = [r for r in week_rows(rollups, monday, UTC) if r["model"] == "m"]
    assert to_csv([old]).splitlines()[1].endswith(",1,0.002000000,0,0"), "the CSV's appended columns"
    rollups.close()
    # and opened once more, nothing is migrated twice
    again = Rollups(path)
    assert again.summary(hour, hour + 1, "workflow")[0]["requests"] == 9
    again.close()


# ---------------------------------------------------------------- report


def test_picometer_report_shows_what_the_cache_saved_and_the_fallbacks_and_downgrades(tmp_path: Path) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    records = mixed_day(now - timedelta(hours=2))
    rollups, usage_log = recorded(tmp_path, records, ManualClock(now))
    rollups.close()
    usage_log.close()
    config = tmp_path / "config.toml"
    s = storage(tmp_path)
    config.write_text(tomli_w.dumps({"storage": {"data_dir": s.data_dir, "log_dir": s.log_dir},
                                     "budgets": {"timezone": "UTC"}}))  # fmt: skip

    done = run("report", "--period", "7d", "--config", str(config))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    head = next(line for line in lines if line.startswith("workflow"))
    assert head.split()[-6:] == ["saved", "cost", "p50", "ms", "p95", "ms"], "cost, p50, p95 stay the last three"
    [digest] = [line.split() for line in lines if line.startswith("digest ")]
    assert digest[-4:-2] == ["$0.0055", "$0.0080"], f"saved, then the cost of the 4 paid calls: {digest}"
    assert "cache saved $0.0056 over 3 hits (30% of calls)" in lines, done.stdout
    assert "fallbacks: 2 calls answered by another provider after the one asked failed (digest 2)" in lines
    assert "downgrades: 1 call sent to a cheaper model by a budget cap (nightly 1)" in lines

    data = json.loads(run("report", "--period", "7d", "--json", "--config", str(config)).stdout)
    rows = {r["key"]: r for r in data["rows"]}
    assert {c: rows["digest"][c] for c in SUBSTITUTES} == pytest.approx(expected_sums(records)["digest"])
    assert {c: data["total"][c] for c in SUBSTITUTES} == pytest.approx(
        {"cache_hits": 3, "cost_saved_usd": 0.0056, "fallbacks": 2, "downgrades": 1}
    )


def test_the_bots_spend_says_what_the_cache_saved_and_what_stood_in(tmp_path: Path) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    rollups, usage_log = recorded(tmp_path, mixed_day(now - timedelta(hours=2)), ManualClock(now))
    operations: Any = SimpleNamespace(rollups=rollups, clock=ManualClock(now), zone=UTC)  # what /spend reads
    (reply,) = asyncio.run(Commands(operations).answer("/spend 7d", by="test"))
    rollups.close()
    usage_log.close()
    lines = html.unescape(reply).splitlines()
    assert "<b>Total</b>: $0.010, 10 calls" in lines, reply
    assert lines[-3:] == [
        "cache saved $0.0056 over 3 hits (30% of calls)",
        "fallbacks: 2 calls answered by another provider after the one asked failed (digest 2)",
        "downgrades: 1 call sent to a cheaper model by a budget cap (nightly 1)",
    ], "the words `picometer report` prints"


def test_a_report_without_cache_hits_or_substitutes_looks_as_before(tmp_path: Path) -> None:
    rollups = Rollups(tmp_path / "rollups.db")
    rollups.add(call(T0), None)
    rollups.flush()
    text = render(build(rollups, "today", "workflow", T0 + timedelta(minutes=5), UTC))
    rollups.close()
    head = next(line for line in text.splitlines() if line.startswith("workflow"))
    assert "saved" not in head and head.split()[-5:] == ["cost", "p50", "ms", "p95", "ms"]
    assert not any(line.startswith(("cache saved", "fallbacks:", "downgrades:")) for line in text.splitlines())


# ---------------------------------------------------------------- weekly CSV


def test_the_weekly_csv_keeps_the_contract_columns_and_appends_the_savings(tmp_path: Path) -> None:
    monday = date(2026, 11, 16)
    records = [
        rec for day in range(7) for rec in mixed_day(datetime(2026, 11, 16, 9, tzinfo=UTC) + timedelta(days=day))
    ]
    rollups, usage_log = recorded(tmp_path, records)
    usage_log.close()
    rows = week_rows(rollups, monday, BERLIN)
    text = to_csv(rows)
    header, *lines = text.split("\r\n")
    assert header == CONTRACT_COLUMNS + ",cache_hits,cost_saved_usd,fallbacks,downgrades"
    parsed = list(csv.DictReader(io.StringIO(text, newline="")))
    assert len(parsed) == len(lines) - 1 == 7 * 3, "7 days x (digest on openai and anthropic, nightly on openai)"
    for r in parsed:
        assert r["week"] == "2026-W47" and set(r) == set(header.split(","))
    per_day: dict[tuple[str, str], dict[str, float]] = {}
    for r in parsed:
        sums = per_day.setdefault((r["date"], r["workflow"]), dict.fromkeys(SUBSTITUTES, 0.0))
        for c in SUBSTITUTES:
            sums[c] += float(r[c])
    day = expected_sums(mixed_day(T0))
    for (_, workflow), sums in per_day.items():
        assert sums == pytest.approx(day[workflow])
    [cached] = [
        r for r in parsed if r["date"] == "2026-11-18" and r["workflow"] == "digest" and r["provider"] == "openai"
    ]
    assert (cached["cache_hits"], cached["cost_saved_usd"], cached["cost_usd"]) == ("2", "0.005500000", "0.004000000")
    caption = summary(rows, [], monday)
    assert caption.splitlines()[-1] == "The cache saved $0.039 over 21 hits.", caption

    rollups.close()
    config = tmp_path / "config.toml"
    config.write_text(tomli_w.dumps({"storage": {"data_dir": str(tmp_path / "data")},
                                     "budgets": {"timezone": "Europe/Berlin"}}))  # fmt: skip
    exported = run("export", "--config", str(config), "--week", "2026-W47", text=False)
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.decode() == text, "the command writes the same file"


# ---------------------------------------------------------------- /metrics


def parse(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def promtool_accepts(body: bytes) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is installed by .ci/run (Debian package prometheus)"
    checked = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr


METRICS_CONFIG = {
    "providers": {
        "openai": {"kind": "openai"},
        "anthropic": {"kind": "anthropic"},
        "openrouter": {"kind": "openai", "base_url": "https://openrouter.ai/api/v1"},
    },
    "workflows": {"digest": {}, "nightly": {}},
}


def test_metrics_count_cache_hits_savings_fallbacks_and_refusals() -> None:
    meter = Meter(config_from_dict(METRICS_CONFIG))
    records = [*mixed_day(T0), fell_back(T0, reason="circuit_open")]
    records.append(call(T0, provider="openai", fallback_from="openrouter/meta-llama/llama-3.1-8b-instruct",
                        fallback_reason="insufficient_quota"))  # fmt: skip
    records.append(call(T0, fallback_from="gone-provider/x", fallback_reason="upstream_timeout"))
    records.append(call(T0, "adhoc", status="blocked", error_type="workflow_paused", cost_usd=0.0))
    records.append(call(T0, "adhoc", status="blocked", error_type=None, cost_usd=0.0))
    for rec in records:
        meter.observe(rec)
    body, _ = exposition(meter, Gauges())
    promtool_accepts(body)
    samples = parse(body)

    def family(name: str) -> dict[tuple[tuple[str, str], ...], float]:
        return {labels: v for (n, labels), v in samples.items() if n == name}

    assert family("picometer_cache_hits_total") == {
        (("workflow", "adhoc"),): 0, (("workflow", "digest"),): 2, (("workflow", "nightly"),): 1,
    }, "every workflow that called has a sample, 0 when no hit"  # fmt: skip
    saved = family("picometer_cost_saved_usd_total")
    assert saved == pytest.approx({(("workflow", "adhoc"),): 0, (("workflow", "digest"),): 0.0055,
                                   (("workflow", "nightly"),): 0.0001})  # fmt: skip
    fallbacks = {tuple(v for _, v in labels): n for labels, n in family("picometer_fallbacks_total").items()}
    assert fallbacks == {  # (model, provider, reason): the one that failed, parsed from fallback_from
        ("gpt-4o-mini", "openai", "upstream_unavailable"): 1,
        ("gpt-4o-mini", "openai", "unknown"): 1,
        ("gpt-4o-mini", "openai", "circuit_open"): 1,
        ("meta-llama/llama-3.1-8b-instruct", "openrouter", "insufficient_quota"): 1,
        ("x", "other", "upstream_timeout"): 1,
    }
    assert family("picometer_refusals_total") == {
        (("reason", "budget_exceeded"),): 1, (("reason", "workflow_paused"),): 1, (("reason", "unknown"),): 1,
    }  # fmt: skip


def test_fallback_and_refusal_reasons_are_bounded_and_nothing_is_lost() -> None:
    meter = Meter(config_from_dict(METRICS_CONFIG))
    n = REASONS_MAX + 40
    for i in range(n):
        meter.observe(fell_back(T0, reason=f"reason-{i}"))
        meter.observe(call(T0, status="blocked", error_type=f"code-{i}", cost_usd=0.0))
        meter.observe(call(T0, fallback_from=f"openrouter/model-{i}", fallback_reason="upstream_unavailable"))
    body, _ = exposition(meter, Gauges())
    promtool_accepts(body)
    samples = parse(body)
    fallbacks = {labels: v for (name, labels), v in samples.items() if name == "picometer_fallbacks_total"}
    refusals = {labels: v for (name, labels), v in samples.items() if name == "picometer_refusals_total"}
    reasons = {dict(labels)["reason"] for labels in fallbacks}
    assert len(reasons) == REASONS_MAX + 1 and "other" in reasons
    assert len(refusals) == REASONS_MAX + 1 and (("reason", "other"),) in refusals
    assert sum(fallbacks.values()) == 2 * n and sum(refusals.values()) == n, "folded, not lost"
    assert len({dict(labels)["model"] for labels in fallbacks}) <= 50 + 1, "models share the series' bound"


def test_the_daemon_counts_refusals_by_code_on_metrics(make_gateway: Callable[..., GatewayServer]) -> None:
    server = make_gateway(workflows={"digest": {}, "paused": {}})
    assert httpx.post(f"{server.url}/-/pause/paused", trust_env=False).status_code == 200

    def chat(workflow: str) -> int:
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
        return httpx.post(f"{server.url}/w/{workflow}/openai/chat/completions", json=body, trust_env=False).status_code

    assert [chat("digest"), chat("paused"), chat("paused")] == [200, 429, 429]
    records = server.records(wait_for=3)
    answer = httpx.get(f"{server.url}/metrics", trust_env=False)
    promtool_accepts(answer.content)
    samples = parse(answer.content)
    refused = [r["error_type"] for r in records if r["status"] == "blocked"]
    assert refused == ["workflow_paused"] * 2
    assert samples[("picometer_refusals_total", (("reason", "workflow_paused"),))] == 2
    assert samples[("picometer_cache_hits_total", (("workflow", "digest"),))] == 0
    assert samples[("picometer_cost_saved_usd_total", (("workflow", "digest"),))] == 0
    assert not [k for k in samples if k[0] == "picometer_fallbacks_total"], "no fallback happened"
