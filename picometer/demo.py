"""`picometer demo`: the real daemon, the simulated provider, a few workflows of synthetic traffic."""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import tomli_w

from picometer.config import config_from_dict, with_secrets
from picometer.daemon import Daemon, bind_socket, configure_logging, uvicorn_server
from picometer.simulator import SimSettings, Simulator

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
        "workflows": {
            "summarizer": {"owner": "you", "daily_usd": 1.0},
            "telegram-bot": {"owner": "you", "env": "prod"},
            "nightly-report": {"keys": [DEMO_KEY], "env": "batch"},
        },
    }


async def _traffic(gateway: str, until: float, spec: tuple[str, str, str, tuple[str, ...], float, float]) -> int:
    workflow, how, provider, models, pause, stream_share = spec
    rng = random.Random(workflow)
    sent = 0
    async with httpx.AsyncClient(timeout=30, trust_env=False) as client:
        while time.monotonic() < until:
            model = rng.choice(models)
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
            if rng.random() < 0.04:
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


async def _main(workdir: Path, seconds: float) -> Path:
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
    print(f"sending {seconds:.0f} s of traffic from {len(WORKFLOWS)} workflows ...", flush=True)
    until = time.monotonic() + seconds
    counts = await asyncio.gather(*(_traffic(gateway, until, spec) for spec in WORKFLOWS))
    async with httpx.AsyncClient(trust_env=False) as client:
        status = (await client.get(f"{gateway}/-/status")).json()
    daemon.stop()
    sim_server.should_exit = True
    await asyncio.gather(daemon_task, sim_task)
    print(f"sent {sum(counts)} requests; the daemon counted {status['requests']}")
    return daemon.usage_log.path


def summarize(log_path: Path) -> str:
    rows: dict[tuple[str, str], dict[str, Any]] = defaultdict(
        lambda: {
            "n": 0,
            "ok": 0,
            "err": 0,
            "blocked": 0,
            "in": 0,
            "cached": 0,
            "out": 0,
            "cost": 0.0,
            "lat": [],
        }
    )
    for line in log_path.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        row = rows[(r["workflow"], r["model"] or "-")]
        row["n"] += 1
        row[{"ok": "ok", "error": "err", "blocked": "blocked"}[r["status"]]] += 1
        row["in"] += r["input_tokens"]
        row["cached"] += r["cached_input_tokens"]
        row["out"] += r["output_tokens"]
        row["cost"] += r["cost_usd"] or 0.0
        row["lat"].append(r["latency_ms"])
    head = f"{'workflow':<16}{'model':<20}{'calls':>6}{'ok':>5}{'err':>5}{'blk':>5}"
    head += f"{'in tok':>9}{'cached':>8}{'out tok':>9}"
    lines = [head + f"{'cost $':>11}{'p50 ms':>8}", "-" * (len(head) + 19)]
    total = 0.0
    for (workflow, model), row in sorted(rows.items(), key=lambda kv: -kv[1]["cost"]):
        total += row["cost"]
        lines.append(
            f"{workflow:<16}{model:<20}{row['n']:>6}{row['ok']:>5}{row['err']:>5}{row['blocked']:>5}{row['in']:>9}{row['cached']:>8}"
            f"{row['out']:>9}{row['cost']:>11.6f}{statistics.median(row['lat']):>8.0f}"
        )
    lines.append(f"{'total':<36}{sum(r['n'] for r in rows.values()):>6}{'':>50}{total:>11.6f}")
    return "\n".join(lines)


def run_demo(workdir: Path, seconds: float) -> None:
    configure_logging("warning")
    log_path = asyncio.run(_main(workdir, seconds))
    print()
    print("metered (from the usage log):")
    print(summarize(log_path))
    print()
    print(f"usage log: {log_path}")
    print(f"config used: {workdir / 'config.toml'}")
    first = log_path.read_text(encoding="utf-8").splitlines()[0]
    print("one record:", first)
