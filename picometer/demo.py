"""`picometer demo`: the real daemon, the simulated provider, a few workflows of synthetic traffic."""

from __future__ import annotations

import asyncio
import random
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import tomli_w

from picometer.config import config_from_dict, with_secrets
from picometer.daemon import Daemon, uvicorn_server
from picometer.local_time import period_key
from picometer.logs import configure_logging
from picometer.metering.budget import caps_from_config
from picometer.preflight import bind_socket
from picometer.reports.export import file_name, to_csv, week_rows, write_atomic
from picometer.reports.report import build, render
from picometer.simulator import SimSettings, Simulator
from picometer.store.rollups import Rollups
from picometer.watch.canary import table

# (workflow, how it tags itself, provider, models, seconds between calls, stream share)
WORKFLOWS: tuple[tuple[str, str, str, tuple[str, ...], float, float], ...] = (
    ("summarizer", "header", "openai", ("gpt-4o-mini",), 0.4, 0.5),
    ("telegram-bot", "path", "anthropic", ("claude-haiku-4-5", "claude-sonnet-4-6"), 0.7, 1.0),
    ("nightly-report", "key", "openai", ("gpt-4o", "gpt-4.1-mini"), 1.5, 0.0),
    ("untagged", "none", "openai", ("gpt-4o-mini",), 2.0, 0.0),
)
DEMO_KEY = "pm-demo-nightly-report-key"


def demo_config(workdir: Path, sim_port: int) -> dict[str, Any]:
    sim = f"http://127.0.0.1:{sim_port}"
    return {
        "server": {"listen": "127.0.0.1:0", "default_provider": "openai"},
        "storage": {"data_dir": str(workdir / "data"), "log_dir": str(workdir / "logs")},
        "providers": {
            "openai": {"kind": "openai", "base_url": f"{sim}/v1", "api_key": "env:PICOMETER_DEMO_KEY"},
            "anthropic": {"kind": "anthropic", "base_url": sim, "api_key": "env:PICOMETER_DEMO_KEY"},
        },
        # Quick retries: a short demo should show a provider hiccup recovered, not wait through it.
        "retry": {"base_delay_s": 0.05, "max_delay_s": 1.0},
        "workflows": {
            "summarizer": {"owner": "you", "daily_usd": 1.0, "slo_latency_s": 5},
            "telegram-bot": {"owner": "you", "env": "prod"},
            # A small cap, so the demo shows the guard refusing calls once it is used up.
            "nightly-report": {"keys": [DEMO_KEY], "env": "batch", "daily_usd": 0.005, "max_tokens_per_request": 300},
        },
        "canary": {
            "probes": [
                {"name": "openai-mini", "provider": "openai", "model": "gpt-4o-mini"},
                {"name": "anthropic-haiku", "provider": "anthropic", "model": "claude-haiku-4-5"},
            ]
        },
    }


async def _traffic(gateway: str, until: float, spec: tuple[str, str, str, tuple[str, ...], float, float]) -> int:
    workflow, how, provider, models, pause, stream_share = spec
    rng = random.Random(workflow)
    sent = 0
    async with httpx.AsyncClient(timeout=30, trust_env=False) as client:
        while time.monotonic() < until:
            model = models[sent % len(models)]  # every model shows up even in a short run
            stream = rng.random() < stream_share
            headers = {"authorization": "Bearer sk-client-key-not-used"}
            base = f"{gateway}/{provider}"
            if how == "header":
                headers["x-picometer-workflow"] = workflow
            elif how == "path":
                base = f"{gateway}/w/{workflow}/{provider}"
            elif how == "key":
                headers["authorization"] = f"Bearer {DEMO_KEY}"
            if rng.random() < 0.3:
                headers["x-sim-cached"] = "40"
            hiccup = rng.random()
            if hiccup < 0.08:  # the provider fails once; picometer's retry gets the answer
                headers |= {"x-sim-fault": "http503", "x-sim-fail-first": "1", "x-sim-id": f"{workflow}-{sent}"}
            elif hiccup < 0.11:  # a real outage for this call: every attempt fails
                headers["x-sim-fault"] = "http500"
            text = f"Please summarise item {rng.randint(1, 10_000)} of the {workflow} queue. " * rng.randint(1, 6)
            if provider == "anthropic":
                url = f"{base}/v1/messages"
                body: dict[str, Any] = {
                    "model": model,
                    "max_tokens": 200,
                    "messages": [{"role": "user", "content": text}],
                }
            else:
                url = f"{base}/chat/completions"
                body = {"model": model, "messages": [{"role": "user", "content": text}]}
            if stream:
                body["stream"] = True
                async with client.stream("POST", url, json=body, headers=headers) as response:
                    async for _ in response.aiter_bytes():
                        pass
            else:
                await client.post(url, json=body, headers=headers)
            sent += 1
            await asyncio.sleep(pause * rng.uniform(0.5, 1.5))
    return sent


async def _kill_switch(gateway: str, seconds: float) -> None:
    """A third of the way in, pause one workflow for a quarter of the run, as `picometer pause` would."""
    await asyncio.sleep(seconds / 3)
    length = f"{max(round(seconds / 4), 1)}s"
    async with httpx.AsyncClient(trust_env=False) as client:
        await client.post(f"{gateway}/-/pause/telegram-bot", json={"for": length})
    print(
        f"paused telegram-bot for {length} (POST /-/pause/telegram-bot); its calls get 429 workflow_paused", flush=True
    )


async def _main(workdir: Path, seconds: float) -> Daemon:
    import os

    os.environ.setdefault("PICOMETER_DEMO_KEY", "sk-simulated-provider-key")
    sim_sock = bind_socket("127.0.0.1", 0)
    sim_server = uvicorn_server(Simulator(SimSettings(latency_s=0.05, chunk_delay_s=0.01)), log_level="error")
    sim_task = asyncio.create_task(sim_server.serve(sockets=[sim_sock]))

    raw = demo_config(workdir, sim_sock.getsockname()[1])
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.toml").write_text(tomli_w.dumps(raw), encoding="utf-8")
    daemon = Daemon(with_secrets(config_from_dict(raw, source=str(workdir / "config.toml")), os.environ))
    sock = bind_socket("127.0.0.1", 0)
    gateway = f"http://127.0.0.1:{sock.getsockname()[1]}"
    daemon_task = asyncio.create_task(daemon.serve(sock))
    while not daemon.server.started:
        await asyncio.sleep(0.05)
    print(f"picometer demo: daemon on {gateway}, simulated provider on port {sim_sock.getsockname()[1]}")
    async with httpx.AsyncClient(trust_env=False, timeout=60) as client:
        probes = (await client.post(f"{gateway}/-/canary")).json()
    print("canary probes (what `picometer canary` prints):")
    print(table(probes["results"]))
    print(f"sending {seconds:.0f} s of traffic from {len(WORKFLOWS)} workflows ...", flush=True)
    until = time.monotonic() + seconds
    counts, _ = await asyncio.gather(
        asyncio.gather(*(_traffic(gateway, until, spec) for spec in WORKFLOWS)), _kill_switch(gateway, seconds)
    )
    async with httpx.AsyncClient(trust_env=False) as client:
        status = (await client.get(f"{gateway}/-/status")).json()
    for alert in status["alerts"]:
        print(f"alert {alert['kind']}: {alert['message']}")
    for name, health in status["upstream"].items():
        retried = ", ".join(f"{n} after {reason}" for reason, n in health["retries"].items()) or "none"
        print(f"provider {name}: retries {retried}; circuit {health['circuit']}")
    daemon.stop()
    sim_server.should_exit = True
    await asyncio.gather(daemon_task, sim_task)
    probed = len(probes["results"])
    scheduled = status["requests"] - sum(counts) - probed
    print(
        f"sent {sum(counts)} requests and {probed} canary probes by hand; the daemon counted {status['requests']}"
        + (f" (the other {scheduled}: the hourly canary's first run, soon after the start)" if scheduled else "")
    )
    return daemon


def run_demo(workdir: Path, seconds: float) -> None:
    configure_logging("error")  # the demo prints each alert itself, once
    daemon = asyncio.run(_main(workdir, seconds))
    rollups = Rollups(daemon.rollups.path)
    now = daemon.clock.now()
    for by in ("workflow", "model"):
        print()
        caps = [cap for pair in caps_from_config(daemon.config).values() for cap in pair] if by == "workflow" else []
        workflows = daemon.config.workflows if by == "workflow" else {}
        print(render(build(rollups, "today", by, now, daemon.zone, caps, workflows)))
    today = period_key("day", now, daemon.zone)
    monday = today - timedelta(days=today.weekday())
    csv = workdir / "exports" / file_name(monday)
    write_atomic(csv, to_csv(week_rows(rollups, monday, daemon.zone)))
    rollups.close()
    print()
    print(f"the weekly CSV (written every Monday at 00:10; this week's so far): {csv}")
    for line in csv.read_text(encoding="utf-8").splitlines()[:4]:
        print(f"  {line}")
    print()
    cli = Path(sys.executable).parent / "picometer"
    command = str(cli) if cli.exists() else "picometer"
    config = workdir / "config.toml"
    print(f"usage log: {daemon.usage_log.path}")
    print(f"rollups:   {daemon.rollups.path}")
    print(f"config:    {config}")
    print("one record:", daemon.usage_log.path.read_text(encoding="utf-8").splitlines()[0])
    print()
    print("try next:")
    print(f"  {command} report --config {config} --by env")
    print(f"  {command} run --simulate      # keep a simulated provider running for your own SDK calls")
