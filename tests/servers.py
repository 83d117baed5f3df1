"""Real loopback servers for tests: each runs its own event loop in a thread."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path
from typing import Any, Self

import httpx
import tomli_w
import uvicorn

from picometer.clock import Clock
from picometer.config import Config, config_from_dict, with_secrets
from picometer.daemon import Daemon, uvicorn_server
from picometer.preflight import bind_socket
from picometer.simulator import SimSettings, Simulator
from tests.patience import patience


class LoopThread:
    """Runs one coroutine (a server) in a thread until told to stop."""

    def __init__(self, main: Callable[[], Coroutine[Any, Any, None]], started: Callable[[], bool]) -> None:
        self._main = main
        self._started = started
        self._error: BaseException | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        await self._main()

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as e:  # surfaced by start()/stop()
            self._error = e

    def start(self, timeout: float = 10.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + patience(timeout)
        while not self._started():
            if self._error is not None:
                raise RuntimeError("server failed to start") from self._error
            if time.monotonic() > deadline:
                raise TimeoutError("server did not start")
            time.sleep(0.01)

    def join(self, timeout: float = 15.0) -> None:
        self.thread.join(patience(timeout))
        if self._error is not None:
            raise RuntimeError("server failed") from self._error


class AppServer:
    """An ASGI app served by uvicorn on a loopback port, in its own thread, for the length of a with block."""

    def __init__(self, app: Any) -> None:
        self.sock = bind_socket("127.0.0.1", 0)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: uvicorn.Server = uvicorn_server(app, log_level="critical", graceful_s=1)
        self._loop = LoopThread(lambda: self.server.serve(sockets=[self.sock]), lambda: self.server.started)

    def __enter__(self) -> Self:
        self._loop.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self._loop.join()


class SimServer(AppServer):
    """The simulated provider (picometer.simulator) on a loopback port."""

    def __init__(self, settings: SimSettings | None = None) -> None:
        self.sim = Simulator(settings or SimSettings())
        super().__init__(self.sim)


def gateway_config(sim_url: str, tmp: Path, **sections: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "server": {"listen": "127.0.0.1:0"},
        "storage": {"data_dir": str(tmp / "data"), "log_dir": str(tmp / "logs")},
        "export": {"dir": str(tmp / "exports")},
        "providers": {
            "openai": {"kind": "openai", "base_url": f"{sim_url}/v1"},
            "anthropic": {"kind": "anthropic", "base_url": sim_url},
        },
    }
    for name, value in sections.items():
        if isinstance(value, dict) and isinstance(raw.get(name), dict):
            raw[name] = {**raw[name], **value}
        else:
            raw[name] = value
    return raw


class GatewayServer:
    """The real daemon (gateway, pricing, usage log) on a loopback port."""

    def __init__(self, raw: dict[str, Any], env: dict[str, str] | None = None, clock: Clock | None = None) -> None:
        self.config: Config = with_secrets(config_from_dict(raw), env or {})
        self.daemon = Daemon(self.config, clock)
        self.sock = bind_socket("127.0.0.1", self.config.server.port)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self._loop = LoopThread(lambda: self.daemon.serve(self.sock), lambda: self.daemon.server.started)

    def __enter__(self) -> GatewayServer:
        self._loop.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.daemon.stop()
        self._loop.join()

    def tick(self) -> None:
        """One pass of the daemon's chores now, on its own loop (what its timer does every few seconds)."""
        loop = self._loop.loop
        assert loop is not None
        asyncio.run_coroutine_threadsafe(self.daemon.tick(), loop).result(timeout=60)

    def records(self, wait_for: int = 0, timeout: float = 5.0) -> list[dict[str, Any]]:
        """The usage log's records; waits until at least `wait_for` are there (they land just after the reply),
        and until the daemon has folded them into its rollups and observers (settle)."""
        deadline = time.monotonic() + patience(timeout)
        while True:
            text = self.daemon.usage_log.path.read_text(encoding="utf-8")
            records = [json.loads(line) for line in text.splitlines() if line]
            if len(records) >= wait_for or time.monotonic() > deadline:
                self.settle()
                return records
            time.sleep(0.01)

    def settle(self) -> None:
        """Every record written so far folded into the rollups and seen by the observers: the daemon does it on
        its loop once each call has ended; a test reading them from its own thread waits for that here."""
        loop = self._loop.loop
        if loop is not None and loop.is_running():
            asyncio.run_coroutine_threadsafe(_drain(self.daemon), loop).result(timeout=60)


async def _drain(daemon: Daemon) -> None:
    daemon.gateway.recorder.drain()


class Gateways:
    """Gateways made one by one in a test, each in its own directory under tmp, all stopped at the end:
    make(env=None, clock=None, **sections) with config sections over the ones given here."""

    def __init__(self, provider_url: str, tmp: Path, **sections: Any) -> None:
        self.provider_url = provider_url
        self.tmp = tmp
        self.sections = sections
        self.made = 0
        self._running = ExitStack()

    def __call__(self, env: dict[str, str] | None = None, clock: Clock | None = None, **sections: Any) -> GatewayServer:
        raw = gateway_config(self.provider_url, self.tmp / f"gw{self.made}", **{**self.sections, **sections})
        self.made += 1
        return self._running.enter_context(GatewayServer(raw, env, clock))

    def __enter__(self) -> Gateways:
        return self

    def __exit__(self, *exc: object) -> None:
        self._running.close()


def stream_post(
    url: str, body: dict[str, Any], headers: dict[str, str] | None = None, timeout: float = 5.0
) -> AbstractContextManager[httpx.Response]:
    """POST `body` as a streaming call ("stream": true) straight to `url`, past any proxy the environment sets;
    the response is read inside the with block."""
    return httpx.stream("POST", url, json={**body, "stream": True}, headers=headers, trust_env=False, timeout=timeout)


def broken_stream(url: str, body: dict[str, Any], headers: dict[str, str]) -> bytes:
    """POST a streaming call whose stream must break off; returns what arrived before it did."""
    got = b""
    with stream_post(url, body, headers, timeout=30) as r:
        assert r.status_code == 200
        try:
            for chunk in r.iter_bytes():
                got += chunk
        except httpx.HTTPError:
            return got
    raise AssertionError(f"the stream ended cleanly: {got[-200:]!r}")


def free_port() -> int:
    """A loopback port nothing listens on (free until someone binds it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raw_request(
    base_url: str, method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """One HTTP/1.1 request with the target sent byte for byte (HTTP clients would normalise dot segments
    and escapes first): (status, body)."""
    url = httpx.URL(base_url)
    head = [f"{method} {target} HTTP/1.1", f"Host: {url.host}:{url.port}", "Connection: close"]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    head.append(f"Content-Length: {len(body)}")
    data = b""
    with socket.create_connection((url.host, url.port or 80), timeout=10) as s:
        s.sendall("\r\n".join(head).encode("latin-1") + b"\r\n\r\n" + body)
        while chunk := s.recv(65536):
            data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    _, _, payload = rest.partition(b"\r\n\r\n")
    return int(status_line.split()[1]), payload


@contextmanager
def daemon_process(
    config: dict[str, Any], tmp: Path, env: dict[str, str] | None = None, args: tuple[str, ...] = ()
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`picometer run [ARGS]` in a subprocess on a free loopback port; yields (its URL, the process) once
    /-/health answers, and stops it with SIGTERM after. Its stderr goes to tmp/daemon.log, stdout to
    tmp/daemon.out."""
    port = free_port()
    config = {**config, "server": {**config["server"], "listen": f"127.0.0.1:{port}"}}
    path = tmp / "config.toml"
    path.write_text(tomli_w.dumps(config))
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PICOMETER", "NOTIFY_"))}
    log, out = (tmp / "daemon.log").open("a"), (tmp / "daemon.out").open("a")
    proc = subprocess.Popen(
        [sys.executable, "-m", "picometer", "run", "--config", str(path), *args],
        env=clean | (env or {}),
        stderr=log,
        stdout=out,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + patience(30)
        while True:
            try:
                if httpx.get(f"{url}/-/health", trust_env=False).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, (tmp / "daemon.log").read_text()
            assert time.monotonic() < deadline, "daemon did not come up"
            time.sleep(0.1)
        yield url, proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        out.close()


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """Resident memory now, or its high-water mark with field="VmHWM"."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field}")


def reset_peak_rss(pid: int) -> None:
    """Start a new high-water mark (VmHWM) at the current RSS: Linux's clear_refs 5."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def cpu_s(pid: int) -> float:
    """User and system CPU seconds the process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
