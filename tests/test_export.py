"""The weekly CSV: its sums against the usage records, percentiles within the histogram's error, weeks
across a DST change and a year end, Python's csv reader and LibreOffice reading it, the scheduled
Monday write (also after a restart that missed it) and the document on the loopback Bot API."""

from __future__ import annotations

import csv
import io
import math
import random
import shutil
import subprocess
import time
import zipfile
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from xml.etree import ElementTree
from zoneinfo import ZoneInfo

import httpx
import pytest
import tomli_w

from picometer.local_time import last_full_week, parse_week
from picometer.metering import histogram
from picometer.record import Record
from picometer.reports.export import COLUMNS, to_csv, week_rows
from picometer.store.rollups import Rollups
from tests.botapi import TOKEN, BotApi
from tests.cli import run
from tests.clocks import ManualClock
from tests.servers import GatewayServer, SimServer, gateway_config

BERLIN = ZoneInfo("Europe/Berlin")
NAMES = ("digest", "support, tier 2", 'the "nightly" job', "émoji 🦜 bot", "=cmd|' /C calc'!A0")


def generated_week(monday: date, zone: ZoneInfo, seed: int = 1, calls: int = 3000) -> list[Record]:
    """Calls spread over the local week (and a little past both ends), of every outcome."""
    rng = random.Random(seed)
    start = datetime.combine(monday, datetime.min.time(), zone).astimezone(UTC) - timedelta(hours=3)
    out = []
    for _ in range(calls):
        at = start + timedelta(seconds=rng.uniform(0, (7 * 24 + 6) * 3600))
        status = rng.choices(["ok", "error", "blocked"], [90, 7, 3])[0]
        priced = status != "blocked"
        out.append(
            Record(
                ts=at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                request_id=f"{rng.getrandbits(32):08x}",
                workflow=rng.choice(NAMES),
                env=rng.choice(["prod", "dev"]),
                provider=rng.choice(["openai", "anthropic"]),
                model=rng.choice(["gpt-4o-mini", "claude-haiku-4-5"]),
                status=status,
                attempts=rng.choice([1, 1, 1, 2, 3]) if priced else 0,
                input_tokens=rng.randint(5, 4000) if priced else 0,
                cached_input_tokens=rng.randint(0, 5) if priced else 0,
                output_tokens=rng.randint(1, 800) if priced else 0,
                cost_usd=rng.uniform(0.0000005, 0.004) if priced else 0.0,
                latency_ms=rng.lognormvariate(6.5, 1.0) if priced else 0.3,
            )
        )
    return out


def rollups_of(records: list[Record], path: Path) -> Rollups:
    rollups = Rollups(path)
    for rec in records:
        rollups.add(rec, None)
    rollups.flush()
    return rollups


def read_csv(text: str) -> list[dict[str, str]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    assert tuple(reader.fieldnames or ()) == COLUMNS
    return list(reader)


def local_date(rec: Record, zone: ZoneInfo) -> str:
    return datetime.fromisoformat(rec.ts).astimezone(zone).date().isoformat()


def test_the_csv_sums_equal_the_sums_over_the_usage_records(tmp_path: Path) -> None:
    monday = date(2026, 11, 16)
    records = generated_week(monday, BERLIN)
    rollups = rollups_of(records, tmp_path / "rollups.db")
    rows = read_csv(to_csv(week_rows(rollups, monday, BERLIN)))
    rollups.close()

    expected: dict[tuple[str, ...], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    latencies: dict[tuple[str, ...], list[float]] = defaultdict(list)
    for rec in records:
        day = local_date(rec, BERLIN)
        if not monday.isoformat() <= day < (monday + timedelta(days=7)).isoformat():
            continue
        key = (day, rec.workflow, rec.env, rec.provider, rec.model or "")
        e = expected[key]
        e["requests"] += 1
        e[rec.status if rec.status != "error" else "errors"] += 1
        e["retries"] += max(rec.attempts - 1, 0)
        e["input_tokens"] += rec.input_tokens
        e["cached_input_tokens"] += rec.cached_input_tokens
        e["output_tokens"] += rec.output_tokens
        e["cost_usd"] += rec.cost_usd or 0.0
        latencies[key].append(rec.latency_ms)

    def name(cell: str) -> str:
        return cell[1:] if cell.startswith("'=") else cell

    got = {(r["date"], name(r["workflow"]), r["env"], r["provider"], r["model"]): r for r in rows}
    assert set(got) == set(expected), "one row per day x workflow x env x provider x model, none missing"
    assert {r["week"] for r in rows} == {"2026-W47"}
    assert {r["date"] for r in rows} == {(monday + timedelta(days=i)).isoformat() for i in range(7)}
    for key, e in expected.items():
        row = got[key]
        for column in ("requests", "ok", "errors", "blocked", "retries", "input_tokens", "cached_input_tokens",
                       "output_tokens"):  # fmt: skip
            assert int(row[column]) == e[column], (key, column)
        assert float(row["cost_usd"]) == pytest.approx(e["cost_usd"], abs=1e-9)
        if e["ok"]:
            assert float(row["cost_per_ok_usd"]) == pytest.approx(e["cost_usd"] / e["ok"], abs=1e-9)
        exact = sorted(latencies[key])
        for column, q in (("p50_ms", 0.50), ("p95_ms", 0.95), ("p99_ms", 0.99)):
            nearest_rank = exact[max(math.ceil(q * len(exact)), 1) - 1]
            # the bin midpoint: within the documented error of the exact value (one decimal printed)
            assert float(row[column]) == pytest.approx(nearest_rank, rel=histogram.RELATIVE_ERROR, abs=0.05)
    total = sum(float(r["cost_usd"]) for r in rows)
    assert total == pytest.approx(sum(e["cost_usd"] for e in expected.values()), abs=1e-9 * len(rows))


def test_a_week_across_the_autumn_dst_change_has_the_right_dates(tmp_path: Path) -> None:
    monday = parse_week("2026-W43")  # Berlin leaves summer time on Sunday 25 October at 03:00
    assert monday == date(2026, 10, 19)
    moments = {
        "2026-10-18T21:59:00Z": None,  # Sunday 23:59 CEST: the week before
        "2026-10-18T22:00:00Z": "2026-10-19",  # Monday 00:00 CEST
        "2026-10-25T00:30:00Z": "2026-10-25",  # 02:30 CEST, the first time
        "2026-10-25T01:30:00Z": "2026-10-25",  # 02:30 CET, the second time
        "2026-10-25T22:59:00Z": "2026-10-25",  # Sunday 23:59 CET: the week's 169th hour
        "2026-10-25T23:00:00Z": None,  # Monday 00:00 CET: the next week
    }
    rows = export_moments(tmp_path, moments, monday)
    expected: dict[str, int] = defaultdict(int)
    for day in moments.values():
        if day is not None:
            expected[day] += 1
    assert {r["date"]: int(r["requests"]) for r in rows} == expected


def test_the_week_across_the_year_end_is_2026_w53_with_dates_in_both_years(tmp_path: Path) -> None:
    monday = parse_week("2026-W53")
    assert monday == date(2026, 12, 28)
    moments = {
        "2026-12-27T22:59:00Z": None,
        "2026-12-31T22:59:00Z": "2026-12-31",  # 23:59 local on New Year's Eve
        "2026-12-31T23:00:00Z": "2027-01-01",
        "2027-01-03T22:30:00Z": "2027-01-03",
        "2027-01-03T23:00:00Z": None,  # 2027-W01
    }
    rows = export_moments(tmp_path, moments, monday)
    assert [(r["week"], r["date"]) for r in rows] == [
        ("2026-W53", "2026-12-31"),
        ("2026-W53", "2027-01-01"),
        ("2026-W53", "2027-01-03"),
    ]
    with pytest.raises(ValueError, match="no week 53"):
        parse_week("2027-W53")
    # the last full week, seen from the first days of 2027
    assert last_full_week(datetime(2027, 1, 5, 9, tzinfo=UTC), BERLIN) == date(2026, 12, 28)


def export_moments(tmp_path: Path, moments: dict[str, str | None], monday: date) -> list[dict[str, str]]:
    records = [
        Record(ts=ts, request_id="r", workflow="w", provider="openai", model="m", cost_usd=0.001, attempts=1)
        for ts in moments
    ]
    rollups = rollups_of(records, tmp_path / "rollups.db")
    rows = read_csv(to_csv(week_rows(rollups, monday, BERLIN)))
    rollups.close()
    return rows


def test_picometer_export_writes_a_file_that_libreoffice_opens(tmp_path: Path) -> None:
    monday = date(2026, 11, 16)
    records = generated_week(monday, BERLIN, calls=400)
    rollups_of(records, tmp_path / "data" / "rollups.db").close()
    config = tmp_path / "config.toml"
    config.write_text(
        tomli_w.dumps({"storage": {"data_dir": str(tmp_path / "data")}, "budgets": {"timezone": "Europe/Berlin"}})
    )
    out = tmp_path / "week.csv"
    done = run("export", "--config", str(config), "--week", "2026-W47", "--out", str(out))
    assert done.returncode == 0, done.stderr
    stdout = run("export", "--config", str(config), "--week", "2026-W47", text=False).stdout
    assert stdout == out.read_bytes(), "--out and stdout carry the same bytes"
    rows = read_csv(out.read_text(encoding="utf-8"))
    assert {r["workflow"] for r in rows} >= {
        "support, tier 2",
        'the "nightly" job',
        "émoji 🦜 bot",
        "'=cmd|' /C calc'!A0",
    }
    bad = run("export", "--config", str(config), "--week", "47")
    assert bad.returncode == 2 and "write it like 2026-W47" in bad.stderr

    soffice = shutil.which("soffice")
    assert soffice, "LibreOffice is installed by scripts/test-deps.sh (Debian package libreoffice-calc-nogui)"
    converted = subprocess.run(
        [soffice, f"-env:UserInstallation=file://{tmp_path}/lo", "--headless", "--convert-to", "xlsx",
         "--infilter=CSV:44,34,76,1", "--outdir", str(tmp_path), str(out)],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert (tmp_path / "week.xlsx").exists(), f"LibreOffice made no xlsx: {converted.stdout} {converted.stderr}"
    cells = xlsx_rows(tmp_path / "week.xlsx")
    assert cells[0] == list(COLUMNS)
    assert len(cells) == len(rows) + 1
    by_name = {c[2]: c for c in cells[1:]}
    assert "émoji 🦜 bot" in by_name and "support, tier 2" in by_name and 'the "nightly" job' in by_name
    assert "'=cmd|' /C calc'!A0" in by_name, "a name that looks like a formula stays text"
    first = rows[0]
    again = next(c for c in cells[1:] if c[2:6] == [first[k] for k in ("workflow", "env", "provider", "model")]
                 and spreadsheet_date(c[1]) == first["date"])  # fmt: skip
    assert float(again[14]) == pytest.approx(float(first["cost_usd"]), abs=1e-12), "the cost is read as a number"


def spreadsheet_date(serial: str) -> str:
    """A date cell: the spreadsheet recognised the column as dates (days since 1899-12-30)."""
    return (date(1899, 12, 30) + timedelta(days=int(float(serial)))).isoformat()


def xlsx_rows(path: Path) -> list[list[str]]:
    """The first sheet's cells as text (shared strings resolved)."""
    ns = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
    with zipfile.ZipFile(path) as z:
        strings = [
            "".join(t.text or "" for t in si.iter(f"{{{ns['m']}}}t"))
            for si in ElementTree.fromstring(z.read("xl/sharedStrings.xml")).findall("m:si", ns)
        ]
        sheet = ElementTree.fromstring(z.read("xl/worksheets/sheet1.xml"))
    out = []
    for row in sheet.iter(f"{{{ns['m']}}}row"):
        cells = []
        for c in row.findall("m:c", ns):
            value = c.find("m:v", ns)
            text = "" if value is None else value.text or ""
            cells.append(strings[int(text)] if c.get("t") == "s" else text)
        out.append(cells)
    return out


# ---------------------------------------------------------------- the Monday write


def test_the_weekly_file_appears_after_monday_0010_and_after_a_restart_that_missed_it(
    sim: SimServer, botapi: BotApi, tmp_path: Path
) -> None:
    raw: dict[str, Any] = gateway_config(
        sim.url,
        tmp_path,
        budgets={"timezone": "Europe/Berlin"},
        telegram={"enabled": True, "bot_token": "env:PM_TOKEN", "chat_ids": [111], "api_base": botapi.url},
    )
    exports = tmp_path / "exports"
    clock = ManualClock(datetime(2026, 11, 24, 9, 0, tzinfo=UTC))  # Tuesday of 2026-W48
    env = {"PM_TOKEN": TOKEN}

    def calls(server: GatewayServer, workflow: str, n: int) -> None:
        for i in range(n):
            answer = httpx.post(
                f"{server.url}/w/{workflow}/openai/chat/completions",
                json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"{workflow} {i}"}]},
                trust_env=False,
            )
            assert answer.status_code == 200
            clock.advance(600)

    with GatewayServer(raw, env, clock) as server:
        calls(server, "digest", 6)
        calls(server, "support", 2)
        # Monday 30 November, 00:05 in Berlin: not yet
        clock.advance((datetime(2026, 11, 29, 23, 5, tzinfo=UTC) - clock.now()).total_seconds())
        server.tick()
        assert not (exports / "picometer-2026-W48.csv").exists()
        clock.advance(6 * 60)  # 00:11
        server.tick()
        assert (exports / "picometer-2026-W48.csv").exists()
        document = botapi_wait_document(botapi)
        week = read_csv((exports / "picometer-2026-W48.csv").read_text(encoding="utf-8"))
        assert sum(int(r["requests"]) for r in week) == 8
        assert document["document"]["filename"] == "picometer-2026-W48.csv"
        assert document["document"]["bytes"] == (exports / "picometer-2026-W48.csv").read_bytes()
        assert "Week 2026-W48: $0.00 over 8 calls (no spend the week before)" in document["caption"]
        assert "Top workflow: digest" in document["caption"]
        calls(server, "digest", 3)  # 2026-W49
    # Down from Monday 30 November until Tuesday 15 December: W49 and W50 were missed.
    clock.advance((datetime(2026, 12, 15, 8, 0, tzinfo=UTC) - clock.now()).total_seconds())
    with GatewayServer(raw, env, clock) as server:
        server.tick()  # the first chores after a start: the weeks missed while down
        assert (exports / "picometer-2026-W50.csv").exists() and (exports / "picometer-2026-W49.csv").exists()
        w49 = read_csv((exports / "picometer-2026-W49.csv").read_text(encoding="utf-8"))
        assert sum(int(r["requests"]) for r in w49) == 3
        assert read_csv((exports / "picometer-2026-W50.csv").read_text(encoding="utf-8")) == []
        deadline = time.monotonic() + 15
        while len(botapi.documents()) < 3:
            assert time.monotonic() < deadline, "the caught-up weeks were not sent"
            time.sleep(0.05)
    names = [d["document"]["filename"] for d in botapi.documents()]
    assert names == ["picometer-2026-W48.csv", "picometer-2026-W49.csv", "picometer-2026-W50.csv"]
    assert sorted(p.name for p in exports.iterdir()) == [
        "picometer-2026-W48.csv", "picometer-2026-W49.csv", "picometer-2026-W50.csv"
    ], "no temporary file is left behind"  # fmt: skip


def botapi_wait_document(api: BotApi, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while not api.documents():
        assert time.monotonic() < deadline, "no document was sent"
        time.sleep(0.05)
    return api.documents()[0]
