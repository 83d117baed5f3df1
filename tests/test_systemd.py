"""sd_notify with a real unix datagram socket: READY when healthy, WATCHDOG from the loop, STOPPING and a drain."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest
import tomli_w

from tests.cli import run
from tests.servers import GatewayServer, SimServer, free_port, gateway_config

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    yield sock
    sock.close()


def receive(sock: socket.socket, want: str, timeout: float) -> list[tuple[float, str]]:
    """(monotonic time, message) until one contains `want`."""
    got: list[tuple[float, str]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            message = sock.recv(4096).decode()
        except TimeoutError:
            break
        got.append((time.monotonic(), message))
        if want in message.split("\n"):
            return got
    raise AssertionError(f"no {want} within {timeout} s; got {[m for _, m in got]}")


def collect(sock: socket.socket, seconds: float) -> list[tuple[float, str]]:
    got: list[tuple[float, str]] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            got.append((time.monotonic(), sock.recv(4096).decode()))
        except TimeoutError:
            break
    return got


def pings(messages: list[tuple[float, str]]) -> list[float]:
    return [t for t, m in messages if "WATCHDOG=1" in m.split("\n")]


@contextlib.contextmanager
def picometer_run(config: Path, notify: socket.socket, **env: str) -> Iterator[subprocess.Popen[str]]:
    """`picometer run` in a subprocess, told to notify `notify`; killed if a test leaves it running."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PICOMETER", "NOTIFY_", "WATCHDOG_"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "picometer", "run", "--config", str(config)],
        env=clean | {"NOTIFY_SOCKET": notify.getsockname()} | env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()


def test_ready_when_healthy_watchdog_on_time_and_sigterm_drains(
    sim: SimServer, notify_socket: socket.socket, tmp_path: Path
) -> None:
    port = free_port()
    config = tmp_path / "config.toml"
    config.write_text(tomli_w.dumps(gateway_config(sim.url, tmp_path, server={"listen": f"127.0.0.1:{port}"})))
    url = f"http://127.0.0.1:{port}"
    with picometer_run(config, notify_socket, WATCHDOG_USEC="1000000") as proc:
        ready = receive(notify_socket, "READY=1", 30)[-1][1]
        assert httpx.get(f"{url}/-/health", trust_env=False).status_code == 200, "READY means it answers"
        assert "STATUS=today $0, month $0, 0 requests (0 blocked) since start" in ready.split("\n")

        beats = pings(collect(notify_socket, 3.0))
        assert len(beats) >= 3
        assert max(b - a for a, b in pairwise(beats)) < 1.0, "never a gap the watchdog would kill"

        result: list[httpx.Response] = []
        slow = threading.Thread(
            target=lambda: result.append(
                httpx.post(
                    f"{url}/openai/chat/completions",
                    json=CHAT,
                    headers={"x-sim-latency-ms": "1500"},
                    trust_env=False,
                    timeout=30,
                )
            )
        )
        before = sim.sim.requests
        slow.start()
        while sim.sim.requests == before:
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        stopping = receive(notify_socket, "STOPPING=1", 10)
        assert stopping
        slow.join(30)
        assert result and result[0].status_code == 200, "the request in flight finished"
        assert proc.wait(30) == 0


def test_sighup_reloads_budgets_and_workflows_keeps_the_money_and_names_what_needs_a_restart(
    sim: SimServer, notify_socket: socket.socket, tmp_path: Path
) -> None:
    port = free_port()
    config = tmp_path / "config.toml"
    raw = gateway_config(
        sim.url, tmp_path, server={"listen": f"127.0.0.1:{port}"}, workflows={"nightly": {"daily_usd": 5.0}}
    )
    config.write_text(tomli_w.dumps(raw))
    url = f"http://127.0.0.1:{port}"

    def status() -> dict[str, Any]:
        return dict(httpx.get(f"{url}/-/status", trust_env=False).json())

    def nightly_day() -> dict[str, Any]:
        return next(b for b in status()["budgets"] if b["scope"] == "workflow:nightly" and b["period"] == "day")

    with picometer_run(config, notify_socket) as proc:
        receive(notify_socket, "READY=1", 30)
        for wf in ("nightly", "digest"):
            r = httpx.post(f"{url}/w/{wf}/openai/chat/completions", json=CHAT, trust_env=False)
            assert r.status_code == 200
        spent = nightly_day()["spent_usd"]
        assert spent > 0

        # Lower the cap below what was spent, start capping a second workflow, and move the listener.
        raw["workflows"] = {"nightly": {"daily_usd": spent / 2}, "digest": {"daily_usd": 1.0}}
        raw["server"]["listen"] = f"127.0.0.1:{free_port()}"
        raw["prices"] = {"gpt-4o-mini": {"input": 100.0, "output": 200.0}}  # the operator's own price, from now
        config.write_text(tomli_w.dumps(raw))
        proc.send_signal(signal.SIGHUP)
        messages = [m for _, m in receive(notify_socket, "READY=1", 10)]
        assert any("RELOADING=1" in m.split("\n") for m in messages), "systemd hears the reload begin and end"
        day = nightly_day()
        assert day["limit_usd"] == pytest.approx(spent / 2) and day["spent_usd"] == pytest.approx(spent)
        digest = next(b for b in status()["budgets"] if b["scope"] == "workflow:digest" and b["period"] == "day")
        assert digest["spent_usd"] > 0, "a workflow new to the budgets starts from what it already spent"
        reload = status()["config"]["last_reload"]
        assert reload["ok"] and reload["restart_needed"] == ["server.listen"], "the old listener keeps serving"
        r = httpx.post(f"{url}/w/nightly/openai/chat/completions", json=CHAT, trust_env=False)
        assert r.status_code == 429 and r.json()["error"]["code"] == "budget_exceeded", "the new cap is in force"
        priced = httpx.post(f"{url}/w/digest/openai/chat/completions", json=CHAT, trust_env=False)
        u = priced.json()["usage"]
        expected = (u["prompt_tokens"] * 100.0 + u["completion_tokens"] * 200.0) / 1e6
        assert float(priced.headers["x-picometer-cost-usd"]) == pytest.approx(expected), "the new prices too"

        config.write_text(config.read_text() + "\n[budgets]\ndaily_usd = -3\n")  # broken: nothing changes
        proc.send_signal(signal.SIGHUP)
        receive(notify_socket, "READY=1", 10)
        reload = status()["config"]["last_reload"]
        assert not reload["ok"] and reload["error"].startswith("[budgets].daily_usd: -3.0 is below 0")
        assert nightly_day()["limit_usd"] == pytest.approx(spent / 2), "a broken file changes nothing"
        just_listen = tmp_path / "status.toml"
        just_listen.write_text(f'[server]\nlisten = "127.0.0.1:{port}"\n')
        shown = run("status", "--config", str(just_listen)).stdout
        assert "CONFIG RELOAD FAILED" in shown and "[budgets].daily_usd: -3.0 is below 0" in shown
        assert "alert budget_blocked (critical)" in shown, "the lowered cap's first refusal"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert proc.stderr is not None
        log = proc.stderr.read()
        assert "these changes wait for a restart" in log and "keys=server.listen" in log
        assert "config reload refused" in log


def test_a_blocked_event_loop_stops_the_watchdog(
    sim: SimServer, notify_socket: socket.socket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", notify_socket.getsockname())
    monkeypatch.setenv("WATCHDOG_USEC", "400000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    with GatewayServer(gateway_config(sim.url, tmp_path)) as gw:
        receive(notify_socket, "READY=1", 10)
        receive(notify_socket, "WATCHDOG=1", 5)
        loop = gw._loop.loop
        assert loop is not None
        loop.call_soon_threadsafe(time.sleep, 1.5)  # a stuck loop: e.g. blocking I/O by mistake
        blocked_at = time.monotonic()
        beats = pings(collect(notify_socket, 3.0))
    gaps = [b - a for a, b in pairwise([blocked_at, *beats])]
    assert max(gaps) >= 1.2, "no ping while the loop was stuck: systemd would restart the service"
    assert len([b for b in beats if b > blocked_at + 1.6]) >= 2, "and they come back once it runs again"


UNIT = Path(__file__).parent.parent / "systemd" / "picometer.service"


def installed_unit(tmp_path: Path) -> Path:
    """The unit as installed, with ExecStart pointing at this checkout's picometer (verify checks it exists)."""
    here = Path(sys.executable).parent / "picometer"
    unit = tmp_path / "picometer.service"
    unit.write_text(UNIT.read_text().replace("/opt/picometer/venv/bin/picometer", str(here)))
    return unit


def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    text = UNIT.read_text()
    for line in ("Type=notify", "NotifyAccess=main", "WatchdogSec=30", "Restart=on-failure", "DynamicUser=yes"):
        assert line in text.splitlines()
    result = subprocess.run(
        ["systemd-analyze", "verify", str(installed_unit(tmp_path))], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_the_unit_is_confined(tmp_path: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(installed_unit(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    last = [line for line in result.stdout.splitlines() if "Overall exposure level" in line][-1]
    exposure = float(last.split(":")[1].split()[0])
    print(f"systemd-analyze security exposure: {exposure}")
    assert exposure <= 2.0, last
