"""Alerts and commands end to end: the real daemon in a subprocess, a loopback Bot API that records calls."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from tests.botapi import TOKEN, BotApi
from tests.patience import patience
from tests.servers import SimServer, daemon_process, gateway_config

CHAT_ID = 111
STRANGER = 999


@contextmanager
def daemon(config: dict[str, Any], tmp: Path) -> Iterator[str]:
    with daemon_process(config, tmp, {"PM_TELEGRAM_TOKEN": TOKEN}) as (url, _):
        yield url


def config_for(sim: SimServer, api: BotApi, tmp: Path, **sections: Any) -> dict[str, Any]:
    return gateway_config(
        sim.url,
        tmp,
        telegram={"enabled": True, "bot_token": "env:PM_TELEGRAM_TOKEN", "chat_ids": [CHAT_ID], "api_base": api.url},
        **sections,
    )


def call(url: str, workflow: str, model: str = "gpt-4o-mini", content: str = "hi") -> httpx.Response:
    return httpx.post(
        f"{url}/w/{workflow}/openai/chat/completions",
        json={"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": content}]},
        trust_env=False,
        timeout=30,
    )


def used(url: str, scope: str) -> float:
    caps = httpx.get(f"{url}/-/status", trust_env=False).json()["budgets"]
    return next(c["used"] for c in caps if c["scope"] == scope and c["period"] == "day")


def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + patience(timeout)
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_crossing_80_percent_of_a_daily_cap_is_told_once_within_5_seconds(
    sim: SimServer, botapi: BotApi, tmp_path: Path
) -> None:
    config = config_for(sim, botapi, tmp_path, workflows={"digest": {"daily_usd": 0.0005, "alert_at": [0.8]}})
    with daemon(config, tmp_path) as url:
        for i in range(500):
            assert call(url, "digest", content=f"n{i}").status_code == 200
            if used(url, "workflow:digest") >= 0.8:
                crossed = time.monotonic()
                break
        else:
            raise AssertionError("the cap was never 80% used")
        (message,) = botapi.wait_sent(1, timeout=5)
        delivered = next(t for t, m, _ in botapi.calls if m == "sendMessage")
        assert delivered - crossed <= 5.0
        assert message["chat_id"] == str(CHAT_ID)
        assert "budget_threshold" in message["text"] and "80% used" in message["text"]
        assert "workflow 'digest'" in message["text"]
        buttons = json.loads(message["reply_markup"])["inline_keyboard"][0]
        assert [b["text"] for b in buttons] == ["Pause 1h", "Mute 24h"]
        # More calls under the cap, within the cooldown: nothing more is said about it.
        for i in range(3):
            call(url, "digest", content=f"more{i}")
        time.sleep(3)
        assert len(botapi.sent()) == 1


def test_alerts_queue_while_telegram_is_down_and_arrive_in_order_across_a_restart(
    sim: SimServer, botapi: BotApi, tmp_path: Path
) -> None:
    config = config_for(sim, botapi, tmp_path, workflows={"digest": {"daily_usd": 0.002, "alert_at": [0.3, 0.6, 0.9]}})
    botapi.down = True

    def fill_to(url: str, share: float) -> None:
        i = 0
        while used(url, "workflow:digest") < share:
            assert call(url, "digest", content=f"{share}-{i}").status_code == 200
            i += 1

    with daemon(config, tmp_path) as url:
        fill_to(url, 0.65)
        time.sleep(2.5)
        status = httpx.get(f"{url}/-/status", trust_env=False).json()["telegram"]
        assert status["queued"] == 2 and not status["connected"]
    with daemon(config, tmp_path) as url:
        fill_to(url, 0.95)
        until(lambda: httpx.get(f"{url}/-/status", trust_env=False).json()["telegram"]["queued"] == 3)
        assert botapi.sent() == []
        botapi.down = False
        texts = [m["text"] for m in botapi.wait_sent(3, timeout=30)]
    assert ["30% used" in texts[0], "60% used" in texts[1], "90% used" in texts[2]] == [True] * 3


def test_pause_from_an_allowed_chat_blocks_and_from_any_other_chat_does_nothing(
    sim: SimServer, botapi: BotApi, tmp_path: Path
) -> None:
    with daemon(config_for(sim, botapi, tmp_path, workflows={"digest": {}}), tmp_path) as url:
        until(lambda: any(m == "getUpdates" for _, m, _ in botapi.calls), timeout=15)
        botapi.command(CHAT_ID, "/pause digets 2h")  # a typo: not paused, and told what was meant
        (typo,) = botapi.wait_sent(1)
        assert "not paused" in typo["text"] and "Did you mean 'digest'?" in typo["text"]
        botapi.command(STRANGER, "/pause digest 2h")
        botapi.command(CHAT_ID, "/pause digest 2h")
        _, reply = botapi.wait_sent(2)
        assert reply["chat_id"] == str(CHAT_ID)
        assert "paused digest for 2h 00m, until " in reply["text"], "the words `picometer pause` prints"
        refused = call(url, "digest")
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "workflow_paused"
        assert "telegram:ana" in refused.json()["error"]["message"]

        botapi.command(STRANGER, "/resume digest")
        botapi.command(CHAT_ID, "/spend today")
        botapi.wait_sent(3)
        assert all(m["chat_id"] == str(CHAT_ID) for m in botapi.sent()), "the stranger got no answer"
        assert call(url, "digest").status_code == 429, "the stranger's /resume did nothing"

        botapi.command(CHAT_ID, "/resume digest")
        botapi.wait_sent(4)
        assert call(url, "digest").status_code == 200


def _history(log_dir: Path, now: datetime) -> None:
    """Seven days of a cheap cron: 60 gpt-4o-mini calls an hour, as usage-log lines the daemon replays."""
    log_dir.mkdir(parents=True)
    start = now - timedelta(days=7)
    lines = []
    for hour in range(7 * 24):
        for minute in range(60):
            at = start + timedelta(hours=hour, minutes=minute)
            if at >= now - timedelta(hours=1):
                break
            rec = {
                "ts": at.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                "request_id": f"h{hour}-{minute}",
                "workflow": "digest",
                "provider": "openai",
                "endpoint": "chat/completions",
                "model": "gpt-4o-mini",
                "status": "ok",
                "http_status": 200,
                "attempts": 1,
                "input_tokens": 20,
                "output_tokens": 10,
                "cost_usd": 0.00001,
                "latency_ms": 100.0,
            }
            lines.append(json.dumps(rec))
    (log_dir / start.strftime("usage-%Y%m%d-%H%M%S.jsonl")).write_text("\n".join(lines) + "\n")


def test_a_runaway_to_a_dear_model_is_told_with_the_workflow_and_the_model_change(
    sim: SimServer, botapi: BotApi, tmp_path: Path
) -> None:
    _history(tmp_path / "logs", datetime.now(UTC))
    config = config_for(sim, botapi, tmp_path, alerts={"spike_min_usd": 0.001})
    with daemon(config, tmp_path) as url:
        for i in range(60):  # the cron now calls gpt-4o, three times as often and more
            assert call(url, "digest", model="gpt-4o", content=f"r{i}").status_code == 200
        messages = botapi.wait_sent(1, timeout=15)
    text = messages[0]["text"]
    assert "runaway" in text or "spike" in text
    assert "Workflow digest" in text
    assert "gpt-4o share went from 0% to 100%" in text
