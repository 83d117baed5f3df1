"""Durable state that heals: a damaged SQLite file does not stop the daemon (it is kept aside, rebuilt from the
usage log where it can be, and told), and a state file that cannot be written does not stop the kill switch."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

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
        assert httpx.post(f"{gw.url}/-/pause/cat", trust_env=False).json()["saved"] is True, "the fresh file works"
    kept = sorted(
        p.name.split(".corrupt-")[0] for p in data.glob("*.corrupt-*") if not p.name.endswith(("-wal", "-shm"))
    )
    assert kept == ["rollups.db", "state.db"]


def test_a_state_file_that_cannot_be_written_still_pauses_and_says_so(
    make_gateway: Callable[..., GatewayServer],
) -> None:
    gw = make_gateway()
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
