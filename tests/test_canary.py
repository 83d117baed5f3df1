"""Canary probes: the verdict on an answer, the schedule over a month of clock time, and the whole path
end to end (real daemon, real simulator, real Bot API on loopback, the real CLI)."""

from __future__ import annotations

import json
import random
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import tomli_w

from picometer.config import ProbeConfig
from picometer.store.usagelog import read_records
from picometer.watch.canary import Schedule, judge
from tests.botapi import TOKEN, BotApi
from tests.cli import run
from tests.clocks import ManualClock
from tests.servers import GatewayServer, SimServer, gateway_config

PROBE = ProbeConfig(name="mini", prompt="Reply with exactly: PONG", expect_regex="^PONG$", max_latency_s=2)
CHAT_ID = 111


def openai_answer(text: str) -> bytes:
    return json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]}).encode()


def anthropic_answer(text: str) -> bytes:
    return json.dumps({"content": [{"type": "text", "text": text}]}).encode()


# ---------------------------------------------------------------- the verdict


@pytest.mark.parametrize(
    ("probe", "kind", "status", "body", "latency", "outcome", "detail"),
    [
        (PROBE, "openai", 200, openai_answer("PONG"), 0.4, "pass", 'answered "PONG" in 0.4 s'),
        (PROBE, "anthropic", 200, anthropic_answer("PONG"), 0.4, "pass", 'answered "PONG"'),
        (PROBE, "openai", 200, openai_answer("pong?"), 0.4, "fail", 'answer "pong?" does not match /^PONG$/'),
        (PROBE, "openai", 200, openai_answer("PONG"), 2.5, "fail", "took 2.5 s, over max_latency_s = 2"),
        (PROBE, "openai", 200, b"<html>nginx</html>", 0.1, "fail", "the answer is not JSON"),
        (PROBE, "openai", 200, b'{"choices": []}', 0.1, "fail", "the answer has no text"),
        (PROBE, "anthropic", 200, openai_answer("PONG"), 0.1, "fail", "the answer has no text"),
        (
            PROBE,
            "openai",
            503,
            b'{"error": {"type": "server_error", "message": "overloaded"}}',
            0.1,
            "fail",
            "HTTP 503 server_error: overloaded",
        ),
        (PROBE, "openai", 502, b"Bad gateway", 0.1, "fail", "HTTP 502"),
        (
            PROBE,
            "openai",
            429,
            b'{"error": {"type": "budget_exceeded", "code": "budget_exceeded", "message": "daily cap $1 reached"}}',
            0.0,
            "skipped",
            "not sent, picometer refused it: daily cap $1 reached",
        ),
        (
            ProbeConfig(name="j", expect_regex="status", expect_json_keys=("status", "n")),
            "openai",
            200,
            openai_answer('```json\n{"status": "ok", "n": 1}\n```'),
            0.1,
            "pass",
            "answered",
        ),
        (
            ProbeConfig(name="j", expect_regex="status", expect_json_keys=("status", "n")),
            "openai",
            200,
            openai_answer('{"status": "ok"}'),
            0.1,
            "fail",
            "answer lacks the JSON keys n",
        ),
        (
            ProbeConfig(name="j", expect_regex="status", expect_json_keys=("status",)),
            "openai",
            200,
            openai_answer("status: ok 🦜"),
            0.1,
            "fail",
            'answer "status: ok 🦜" is not a JSON object',
        ),
    ],
)
def test_a_probe_passes_only_with_success_the_expected_text_and_keys_in_time(
    probe: ProbeConfig, kind: str, status: int, body: bytes, latency: float, outcome: str, detail: str
) -> None:
    got, why = judge(probe, kind, status, body, latency)
    assert (got, why[: len(detail)]) == (outcome, detail)


# ---------------------------------------------------------------- the schedule


def drive(schedule: Schedule, clock: ManualClock, seconds: float, interval: float, rng: random.Random) -> list[float]:
    """Run the scheduler loop against a simulated clock (sleeps overshoot, runs take time); run wall times."""
    runs: list[float] = []
    start = clock.monotonic()
    while clock.monotonic() - start < seconds:
        wall = clock.now().timestamp()
        wait = schedule.delay(wall, clock.monotonic(), interval)
        if wait > 0:
            clock.advance(min(wait, 300.0) + rng.uniform(0, 0.05))  # asyncio.sleep wakes a little late
            continue
        schedule.ran(wall, interval)
        runs.append(wall)
        clock.advance(rng.uniform(0.2, 20.0))  # the probes take time
    return runs


def at(timestamp: float) -> ManualClock:
    return ManualClock(datetime.fromtimestamp(timestamp, UTC))


def test_the_schedule_stays_on_the_hour_over_a_simulated_month() -> None:
    start = 1_795_000_000.0 + 1234.5  # mid-hour
    clock = at(start)
    schedule = Schedule(first_at=clock.monotonic() + 17.0)  # the jittered first run
    runs = drive(schedule, clock, 30 * 86400, 3600.0, random.Random(7))
    assert runs[0] == pytest.approx(start + 17.0, abs=0.1)
    hourly = runs[1:]
    assert len(hourly) == 30 * 24  # one a slot, none missed, none doubled
    for i, began in enumerate(hourly):
        slot_start = (int(start // 3600) + 1 + i) * 3600
        assert slot_start <= began < slot_start + 0.2, "each run starts right on its hour: no drift after a month"


def test_a_clock_jump_gives_one_run_forward_and_no_burst_backward() -> None:
    clock = at(1_795_000_000.0)
    schedule = Schedule(first_at=clock.monotonic())
    rng = random.Random(3)
    runs = drive(schedule, clock, 3 * 3600, 3600.0, rng)
    assert len(runs) == 4
    clock.wall += timedelta(days=5)  # NTP after a boot without an RTC: five days ahead
    jumped_at = clock.now().timestamp()
    jumped = drive(schedule, clock, 2 * 3600, 3600.0, rng)
    assert jumped[0] == jumped_at, "the missed slot runs at once"
    assert len(jumped) == 3, "one catch-up run, not one per missed hour"
    clock.wall -= timedelta(hours=3)  # and back three hours
    back = drive(schedule, clock, 4 * 3600, 3600.0, rng)
    assert len(back) == 4
    for began in back:
        assert began % 3600 < 1, "back on the hour at once"


# ---------------------------------------------------------------- end to end


def canary_config(sim: SimServer, tmp: Path, api: BotApi | None = None, **probe: Any) -> dict[str, Any]:
    sections: dict[str, Any] = {
        "canary": {"probes": [{"name": "mini", "provider": "openai", "model": "gpt-4o-mini", "fail_after": 2, **probe}]}
    }
    if api is not None:
        sections["telegram"] = {
            "enabled": True,
            "bot_token": "env:PM_TELEGRAM_TOKEN",
            "chat_ids": [CHAT_ID],
            "api_base": api.url,
        }
    return gateway_config(sim.url, tmp, **sections)


def manual_only(server: GatewayServer) -> GatewayServer:
    """No scheduled runs: only those the test asks for."""
    server.daemon.canary.schedule = Schedule(first_at=float("inf"))
    return server


def run_canary(url: str) -> dict[str, Any]:
    answer = httpx.post(f"{url}/-/canary", timeout=60, trust_env=False)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def told(server: GatewayServer, kind: str) -> int:
    """Alerts of this kind the daemon decided to tell (decided before /-/canary answers; only these are sent)."""
    return sum(1 for a in server.daemon.alerts if a.kind == kind)


def canary_messages(api: BotApi) -> list[str]:
    return [m["text"] for m in api.sent() if "canary" in m["text"]]


def test_a_provider_answering_out_of_format_alerts_after_fail_after_runs_and_the_recovery_is_told_once(
    sim: SimServer, botapi: BotApi, tmp_path: Path
) -> None:
    server = manual_only(GatewayServer(canary_config(sim, tmp_path, botapi), {"PM_TELEGRAM_TOKEN": TOKEN}))
    with server:
        assert run_canary(server.url)["ok"]
        sim.sim.settings.reply = "I'm sorry, I can't help with that."
        first = run_canary(server.url)
        assert not first["ok"]
        assert first["results"][0]["outcome"] == "fail"
        assert "does not match /PONG/" in first["results"][0]["detail"]
        assert told(server, "canary_failed") == 0, "one failure is not yet an alert (fail_after = 2)"

        assert not run_canary(server.url)["ok"]
        (failed,) = botapi.wait_sent(1)
        assert "canary_failed" in failed["text"] and "probe:mini" in failed["text"]
        assert "failed 2 runs in a row" in failed["text"] and "I&#x27;m sorry" not in failed["text"]
        assert "I'm sorry, I can't help with that." in failed["text"]

        assert not run_canary(server.url)["ok"]  # still failing: not told again within the cooldown
        assert told(server, "canary_failed") == 1

        sim.sim.settings.reply = ""
        assert run_canary(server.url)["ok"]
        _, recovered = botapi.wait_sent(2)
        assert "canary_recovered" in recovered["text"] and "after 3 failed runs" in recovered["text"]
        assert run_canary(server.url)["ok"]
        assert told(server, "canary_recovered") == 1, "a recovery is told once"
        assert len(canary_messages(botapi)) == 2

        botapi.command(CHAT_ID, "/canary")  # from the phone: the same run, the same table
        *_, reply = botapi.wait_sent(3)
        assert "Canary: all pass" in reply["text"] and "PASS mini (openai gpt-4o-mini)" in reply["text"]

        status = httpx.get(f"{server.url}/-/status", trust_env=False).json()["canary"]
        (probe,) = status["probes"]
        assert probe["last"]["outcome"] == "pass" and probe["failures_in_a_row"] == 0
        records = server.records(wait_for=7)
    probes = [r for r in records if r["canary"]]
    assert len(probes) == 7 and len(records) == 7
    assert {r["workflow"] for r in probes} == {"canary"}
    assert all(r["cost_usd"] > 0 for r in probes), "every probe is priced and counted in spend"


def test_a_probe_slower_than_max_latency_fails_and_costs_what_the_record_says(sim: SimServer, tmp_path: Path) -> None:
    sim.sim.settings.latency_s = 1.2
    with manual_only(GatewayServer(canary_config(sim, tmp_path, max_latency_s=1))) as server:
        (result,) = run_canary(server.url)["results"]
        (record,) = server.records(wait_for=1)
    assert result["outcome"] == "fail" and "over max_latency_s = 1" in result["detail"]
    assert result["cost_usd"] == pytest.approx(record["cost_usd"])
    assert record["status"] == "ok" and record["canary"] is True


def test_the_schedule_runs_probes_through_the_listener_even_where_client_keys_are_required(
    sim: SimServer, tmp_path: Path
) -> None:
    raw = canary_config(sim, tmp_path)
    raw["server"]["client_keys"] = ["pm-client-key-for-tests"]
    server = GatewayServer(raw)
    server.daemon.canary.schedule = Schedule(first_at=server.daemon.clock.monotonic() + 0.5)
    with server:
        stranger = httpx.post(
            f"{server.url}/w/canary/openai/chat/completions",
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
            headers={"x-picometer-canary": "guess"},
            trust_env=False,
        )
        assert stranger.status_code == 401, "the canary mark is a secret, not a way around client keys"
        records = server.records(wait_for=2)
        deadline = time.monotonic() + 10
        while server.daemon.canary.last.get("mini") is None:
            assert time.monotonic() < deadline, "the scheduled run did not happen"
            time.sleep(0.05)
        assert "canary 1/1 ok" in server.daemon.ops.status_line()
        records = server.records(wait_for=2)
    scheduled = [r for r in records if r["canary"]]
    assert len(scheduled) == 1 and scheduled[0]["status"] == "ok"
    assert [r["canary"] for r in records if r["http_status"] == 401] == [False]


def cli_canary(config: Path) -> subprocess.CompletedProcess[str]:
    return run("canary", "--config", str(config))


def test_picometer_canary_prints_results_and_exits_1_on_a_failure_with_or_without_the_daemon(
    sim: SimServer, tmp_path: Path
) -> None:
    raw = canary_config(sim, tmp_path)
    server = manual_only(GatewayServer(raw))
    path = tmp_path / "config.toml"
    path.write_text(tomli_w.dumps({**raw, "server": {"listen": server.url.removeprefix("http://")}}))
    with server:
        ok = cli_canary(path)
        assert ok.returncode == 0, ok.stderr
        assert ok.stdout.startswith("PASS mini (openai gpt-4o-mini)")
        sim.sim.settings.reply = "PING"
        bad = cli_canary(path)
        assert bad.returncode == 1 and bad.stdout.startswith("FAIL mini") and 'answer "PING"' in bad.stdout
        assert len(server.records(wait_for=2)) == 2
    down = cli_canary(path)  # the daemon is stopped: the same gateway runs in the CLI's process
    assert down.returncode == 1 and "not running" in down.stderr and down.stdout.startswith("FAIL mini")
    sim.sim.settings.reply = ""
    assert cli_canary(path).returncode == 0
    lines = [data for data, _ in read_records(tmp_path / "logs", None)]
    assert [r["canary"] for r in lines] == [True] * 4, "probes run by the CLI are recorded like the daemon's"
