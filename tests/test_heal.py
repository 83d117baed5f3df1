"""Durable state that heals: a damaged SQLite file does not stop the daemon (it is kept aside, rebuilt from the
usage log where it can be, and told), and a state file that cannot be written does not stop the kill switch."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from picometer import daemon
from picometer.clock import SystemClock
from picometer.config import StorageConfig
from picometer.record import Record, rfc3339_ms
from picometer.store.rollups import Rollups
from picometer.store.usagelog import UsageLog
from tests.servers import GatewayServer, SimServer, gateway_config

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "feed the cat"}]}


def test_damaged_databases_are_kept_aside_rebuilt_and_told(sim: SimServer, tmp_path: Path) -> None:
    raw = gateway_config(sim.url, tmp_path)
    with GatewayServer(raw) as gw:
        costs = [
            float(
                httpx.post(f"{gw.url}/openai/chat/completions", json=CHAT, trust_env=False).headers[
                    "x-picometer-cost-usd"
                ]
            )
            for _ in range(4)
        ]
    data = tmp_path / "data"
    for name in ("rollups.db", "state.db"):
        (data / name).write_bytes(b"this is not a database, an SD card ate it " * 100)
        for suffix in ("-wal", "-shm"):
            (data / (name + suffix)).unlink(missing_ok=True)
    with GatewayServer(raw) as gw:
        status = httpx.get(f"{gw.url}/-/status", trust_env=False).json()
        assert status["spend_usd"]["today"] == pytest.approx(sum(costs)), "rebuilt from the usage log"
        told = {a["key"]: a for a in status["alerts"] if a["kind"] == "database_rebuilt"}
        assert set(told) == {"database_rebuilt:rollups", "database_rebuilt:state"}
        assert "pause again" in told["database_rebuilt:state"]["message"]
        paused = httpx.post(f"{gw.url}/-/pause/cat", json={"force": True}, trust_env=False).json()
        assert paused["saved"] is True, "the fresh file works"
    kept = sorted(
        p.name.split(".corrupt-")[0] for p in data.glob("*.corrupt-*") if not p.name.endswith(("-wal", "-shm"))
    )
    assert kept == ["rollups.db", "state.db"]


def test_a_state_file_that_cannot_be_written_still_pauses_and_says_so(
    make_gateway: Callable[..., GatewayServer],
) -> None:
    gw = make_gateway(workflows={"cat": {}})
    gw.daemon.state._db.execute("PRAGMA query_only = 1")  # as a read-only file or a full disk would
    post = lambda path, **kw: httpx.post(f"{gw.url}{path}", trust_env=False, **kw)  # noqa: E731
    paused = post("/-/pause/cat", json={"for": "1h"})
    assert paused.status_code == 200
    answer = paused.json()
    assert answer["paused"] is True and answer["saved"] is False
    assert "state.db could not be written" in answer["warning"] and "until picometer restarts" in answer["warning"]
    blocked = post("/w/cat/openai/chat/completions", json=CHAT)
    assert blocked.status_code == 429 and blocked.json()["error"]["code"] == "workflow_paused"
    assert post("/w/dog/openai/chat/completions", json=CHAT).status_code == 200, "the daemon keeps serving"
    resumed = post("/-/resume/cat").json()
    assert resumed["was_paused"] is True and resumed["saved"] is False and "comes back" in resumed["warning"]
    assert post("/w/cat/openai/chat/completions", json=CHAT).status_code == 200


def corrupt_on_disk(path: Path, rollups: Any) -> None:
    """As a failing SD card would: pages of the file overwritten under the running daemon."""
    with rollups._db_lock:  # everything into the main file first, so the damage hits real data
        rollups._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with path.open("r+b") as f:
        f.seek(4096)
        f.write(os.urandom(path.stat().st_size - 4096))


def test_a_rollups_file_damaged_while_running_is_found_rebuilt_and_told(
    sim: SimServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(daemon, "CHECK_INTERVAL_S", 0.0)  # the hourly check, on every tick
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    with GatewayServer(gateway_config(sim.url, tmp_path)) as gw:
        cost = lambda: float(  # noqa: E731
            httpx.post(f"{gw.url}/openai/chat/completions", json=CHAT, trust_env=False).headers["x-picometer-cost-usd"]
        )
        before = [cost() for _ in range(4)]
        rollups = gw.daemon.rollups
        gw.records(4)
        gw.tick()  # flushed
        corrupt_on_disk(tmp_path / "data" / "rollups.db", rollups)
        after = [cost() for _ in range(3)]
        gw.records(7)
        gw.tick()  # the check finds it, the file is rebuilt from the log
        alerts = httpx.get(f"{gw.url}/-/status", trust_env=False).json()["alerts"]
        told = [a for a in alerts if a["key"] == "database_rebuilt:rollups"]
        assert told and "rebuilt from the usage log" in told[0]["message"]
        more = [cost() for _ in range(2)]
        gw.settle()
        assert rollups.spend_since(day) == pytest.approx(sum(before + after + more)), "each call counted once"
        assert rollups.check(), "the fresh file is sound"
        rollups.flush()
        rows = rollups.summary(int(day.timestamp()) // 3600, int(day.timestamp()) // 3600 + 48, "workflow")
        assert sum(r["requests"] for r in rows) == 9
    assert list((tmp_path / "data").glob("rollups.db.corrupt-*")), "the damaged file is kept aside"


def test_a_heal_while_records_arrive_counts_each_once(tmp_path: Path) -> None:
    """Records that land while the log is folded again are neither lost nor counted twice."""
    log = UsageLog(StorageConfig(data_dir=str(tmp_path / "data"), log_dir=str(tmp_path / "logs")), SystemClock())
    rollups = Rollups(tmp_path / "data" / "rollups.db")
    now = datetime.now(UTC)

    def record(i: int) -> None:
        rec = Record(ts=rfc3339_ms(now), request_id=f"r{i}", workflow="w", provider="p", model="m", cost_usd=0.01)
        rollups.add(rec, log.write(rec))

    for i in range(200):
        record(i)
    rollups.flush()
    for i in range(200, 300):
        record(i)  # pending, not yet flushed, when the file is found damaged
    corrupt_on_disk(rollups.path, rollups)
    assert not rollups.check() and rollups.damaged
    log.sync()
    arriving = threading.Thread(target=lambda: [record(i) for i in range(300, 400)])
    arriving.start()
    rollups.heal(log.dir)
    arriving.join()
    rollups.flush()
    assert rollups.spend_since(now - timedelta(hours=1)) == pytest.approx(4.00)
    assert rollups.watermark is not None and not rollups.damaged
