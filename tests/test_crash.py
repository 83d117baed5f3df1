"""The real daemon in a subprocess: kill -9 under load loses nothing a client saw; SIGTERM drains."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

from picometer.simulator import SimSettings
from picometer.store.rollups import Rollups, totals
from picometer.store.usagelog import read_records
from tests.servers import SimServer, free_port


def write_config(tmp: Path, sim_url: str) -> tuple[Path, str]:
    port = free_port()
    cfg = tmp / "config.toml"
    cfg.write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\n'
        f'[storage]\ndata_dir = "{tmp / "data"}"\nlog_dir = "{tmp / "logs"}"\nfsync_interval_s = 1\n'
        f'[providers.openai]\nkind = "openai"\nbase_url = "{sim_url}/v1"\n'
    )
    return cfg, f"http://127.0.0.1:{port}"


def start(cfg: Path, url: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "picometer", "run", "--config", str(cfg)], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/-/health", timeout=1, trust_env=False).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise TimeoutError(proc.stderr.read().decode() if proc.stderr else "")


def client_loop(url: str, n: int, stop: threading.Event, completed: list[str]) -> None:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"client {n} asks"}]}
    with httpx.Client(timeout=10, trust_env=False) as client:
        i = 0
        while not stop.is_set():
            i += 1
            try:
                if i % 2:
                    r = client.post(f"{url}/openai/chat/completions", json=body)
                    r.json()
                    if r.status_code == 200:
                        completed.append(r.headers["x-picometer-request-id"])
                else:
                    with client.stream("POST", f"{url}/openai/chat/completions", json={**body, "stream": True}) as s:
                        text = b"".join(s.iter_bytes())
                        if s.status_code == 200 and text.endswith(b"data: [DONE]\n\n"):
                            completed.append(s.headers["x-picometer-request-id"])
            except (httpx.HTTPError, json.JSONDecodeError):
                time.sleep(0.01)


def test_kill_9_under_load_loses_nothing_a_client_received(tmp_path: Path) -> None:
    with SimServer(SimSettings(chunk_delay_s=0.002)) as sim:
        cfg, url = write_config(tmp_path, sim.url)
        proc = start(cfg, url)
        stop, completed = threading.Event(), []  # type: ignore[var-annotated]
        threads = [threading.Thread(target=client_loop, args=(url, n, stop, completed)) for n in range(12)]
        for t in threads:
            t.start()
        time.sleep(3.0)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        stop.set()
        for t in threads:
            t.join(15)
        assert len(completed) > 50, "the load really ran"

        proc = start(cfg, url)  # replays the log past the watermark
        month_spend = httpx.get(f"{url}/-/status", trust_env=False).json()["spend_usd"]["month"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0

    records = [r for r, _ in read_records(tmp_path / "logs")]
    seen = Counter(r["request_id"] for r in records)
    assert all(seen[rid] == 1 for rid in completed), "every answer the clients got is logged exactly once"
    assert max(seen.values()) == 1
    rollups = Rollups(tmp_path / "data" / "rollups.db")
    assert totals(rollups.summary(0, 10**7, "workflow"))["requests"] == len(records), "rollups: exactly once"
    assert (
        month_spend == round(sum(r["cost_usd"] for r in records), 6)
        or abs(month_spend - sum(r["cost_usd"] for r in records)) < 1e-6
    )


def test_sigterm_lets_a_stream_in_flight_finish_then_flushes(tmp_path: Path) -> None:
    with SimServer(SimSettings(chunk_delay_s=0.1)) as sim:
        cfg, url = write_config(tmp_path, sim.url)
        proc = start(cfg, url)
        body = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "slow please"}]}
        with httpx.stream("POST", f"{url}/openai/chat/completions", json=body, trust_env=False, timeout=30) as s:
            chunks = s.iter_bytes()
            first = next(chunks)
            proc.send_signal(signal.SIGTERM)
            rest = b"".join(chunks)
        assert (first + rest).endswith(b"data: [DONE]\n\n"), "the stream in flight completed"
        assert proc.wait(30) == 0
        with __import__("pytest").raises(httpx.HTTPError):
            httpx.get(f"{url}/-/health", timeout=1, trust_env=False)
    rollups = Rollups(tmp_path / "data" / "rollups.db")
    row = totals(rollups.summary(0, 10**7, "workflow"))
    assert row["requests"] == 1 and row["ok"] == 1, "flushed to the rollups on the way out"
