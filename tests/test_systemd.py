"""sd_notify with a real unix datagram socket: READY when healthy, WATCHDOG from the loop, STOPPING and a drain."""

from __future__ import annotations

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

import httpx
import pytest
import tomli_w

from tests.servers import GatewayServer, SimServer, gateway_config

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


def test_ready_when_healthy_watchdog_on_time_and_sigterm_drains(
    sim: SimServer, notify_socket: socket.socket, tmp_path: Path
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "config.toml"
    config.write_text(tomli_w.dumps(gateway_config(sim.url, tmp_path, server={"listen": f"127.0.0.1:{port}"})))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PICOMETER", "NOTIFY_", "WATCHDOG_"))}
    env |= {"NOTIFY_SOCKET": notify_socket.getsockname(), "WATCHDOG_USEC": "1000000"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "picometer", "run", "--config", str(config)], env=env, stderr=subprocess.PIPE
    )
    url = f"http://127.0.0.1:{port}"
    try:
        ready = receive(notify_socket, "READY=1", 30)[-1][1]
        assert httpx.get(f"{url}/-/health", trust_env=False).status_code == 200, "READY means it answers"
        assert "STATUS=today $0.000000, month $0.000000, 0 requests (0 blocked) since start" in ready.split("\n")

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
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()


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
