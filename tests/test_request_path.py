"""The request path touches memory only: every SQLite statement the daemon runs is traced, and none may run
for a proxied request (budget alerts, unpriced warnings and expired pauses are handled after it)."""

from __future__ import annotations

import contextvars
import time
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import timedelta
from typing import Any

import httpx

from tests.servers import GatewayServer

IN_REQUEST: contextvars.ContextVar[bool] = contextvars.ContextVar("in_request", default=False)
CHAT = {"model": "gpt-4o-mini", "max_tokens": 50, "messages": [{"role": "user", "content": "log the rain gauge " * 40}]}


def trace(gw: GatewayServer) -> tuple[list[str], list[str]]:
    """(every statement, statements run for a proxied request) from the daemon's three SQLite files."""
    seen: list[str] = []
    flagged: list[str] = []

    def on_statement(sql: str) -> None:
        seen.append(sql)
        if IN_REQUEST.get():
            flagged.append(sql)

    d = gw.daemon
    for db in (d.rollups._db, d.state._db, d.outbox._db):
        db.set_trace_callback(on_statement)
    proxy = d.gateway.proxy

    async def marked(scope: MutableMapping[str, Any], receive: Callable[[], Awaitable[Any]], send: Any) -> None:
        IN_REQUEST.set(True)  # this task's context: whatever runs for this request sees it, threads included
        await proxy(scope, receive, send)

    d.gateway.proxy = marked  # type: ignore[assignment]
    return seen, flagged


def test_no_sqlite_call_is_made_for_a_request(make_gateway: Callable[..., GatewayServer]) -> None:
    gw = make_gateway(
        budgets={"daily_usd": 0.0003, "alert_at": [0.01, 0.5, 1.0], "unpriced": "allow"},
        workflows={"garden": {"slo_target": 0.99}},
    )
    seen, flagged = trace(gw)
    client = httpx.Client(base_url=gw.url, trust_env=False, timeout=30)
    now = gw.daemon.clock.now()
    gw.daemon.state.pause("old-job", now - timedelta(seconds=1), "test", now - timedelta(hours=1))  # expired
    statuses = []
    for i in range(12):
        body = {**CHAT, "stream": i % 2 == 1}
        statuses.append(client.post("/openai/chat/completions", json=body, headers={"x-picometer-workflow": "garden"}))
    statuses.append(client.post("/openai/chat/completions", json={**CHAT, "model": "my-own-finetune"}))
    statuses.append(client.post("/openai/chat/completions", json=CHAT, headers={"x-picometer-workflow": "old-job"}))
    statuses.append(client.post("/openai/batches", json={"input_file_id": "f"}))
    codes = [r.status_code for r in statuses]
    assert 200 in codes and 429 in codes and 403 in codes, codes  # calls passed, the cap refused, unmetered refused
    gw.records(len(codes))
    assert client.get("/-/status").status_code == 200
    assert client.get("/metrics").status_code == 200
    deadline = time.monotonic() + 5
    while not {"budget_threshold", "budget_blocked", "unpriced_model"} <= (
        kinds := {str(a.kind) for a in gw.daemon.alerts}
    ):
        assert time.monotonic() < deadline, kinds
        time.sleep(0.01)
    assert any("alert" in sql.lower() or "INSERT" in sql for sql in seen), "the alerts did reach SQLite, later"
    assert flagged == [], flagged
