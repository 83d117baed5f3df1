"""make bench: what picometer adds to a call, measured against a direct call and against a bare pass-through proxy
(the same server and HTTP client stack, no metering) in the same run.

The simulated provider (and a second one pacing its streams as a model writes them), the bare proxy and the
daemon each run in their own process; this process is the client. Direct, bare and picometer calls take turns
(the order rotates every round), so all see the same machine state.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root: tests/ is importable
from tests.hostile import HostileServer

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "1500"))
WARMUP = 100
PINNING = "proxies pinned to one, client and provider to the other"
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello to the benchmark."}]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_sim(port: int, chunk_delay_s: float = 0.0) -> None:
    import asyncio

    from picometer.daemon import uvicorn_server
    from picometer.preflight import bind_socket
    from picometer.simulator import SimSettings, Simulator

    server = uvicorn_server(Simulator(SimSettings(chunk_delay_s=chunk_delay_s)), log_level="error")
    asyncio.run(server.serve(sockets=[bind_socket("127.0.0.1", port)]))


def serve_bare(port: int, upstream: str, paced: str) -> None:
    """A pass-through proxy with picometer's own server and connection pool, and nothing else: the floor.
    /openai/... goes to `upstream`, /paced/... to `paced`."""
    import asyncio

    import httpx as hx

    from picometer.daemon import uvicorn_server
    from picometer.gateway.forward import response_headers
    from picometer.gateway.pool import new_transport
    from picometer.preflight import bind_socket
    from picometer.simulator import Receive, Scope, Send, request_body

    transport = new_transport()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        body = await request_body(scope, receive, send)
        if body is None:
            return
        headers = [(k, v) for k, v in scope["headers"] if k not in (b"host", b"content-length")]
        path: str = scope["path"]
        if path.startswith("/paced/"):
            url = paced + path.removeprefix("/paced")
        else:
            url = upstream + path.removeprefix("/openai")
        request = hx.Request(scope["method"], url, headers=headers, content=body)
        response = await transport.handle_async_request(request)
        await send(
            {
                "type": "http.response.start",
                "status": response.status_code,
                "headers": response_headers(response.headers),
            }
        )
        async for chunk in response.aiter_bytes():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await response.aclose()
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    server = uvicorn_server(app, log_level="error")
    asyncio.run(server.serve(sockets=[bind_socket("127.0.0.1", port)]))


def wait_healthy(url: str, timeout: float = 30) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        try:
            if httpx.get(url, timeout=1, trust_env=False).status_code == 200:
                return time.perf_counter() - start
        except httpx.HTTPError:
            pass
        time.sleep(0.005)
    raise TimeoutError(url)


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """Resident memory now, or its high-water mark with field="VmHWM"."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timed(client: httpx.Client, url: str, stream: bool) -> float:
    body = {**CHAT, "stream": True} if stream else CHAT
    start = time.perf_counter()
    if stream:
        with client.stream("POST", url, json=body) as r:
            for _ in r.iter_bytes():
                pass
    else:
        r = client.post(url, json=body)
    elapsed = time.perf_counter() - start
    assert r.status_code == 200, r.status_code
    return elapsed * 1000


ABUSE_NAMES = int(os.environ.get("BENCH_ABUSE_NAMES", "5000"))


def abuse(url: str) -> None:
    """What a hostile or buggy client sends: a new workflow and model name on every call, and huge names.
    Each is refused (unpriced or too long) before any provider is called; the RSS after it is the figure."""
    with httpx.Client(timeout=60, trust_env=False) as client:
        for i in range(ABUSE_NAMES):
            body = {**CHAT, "model": f"no-such-model-{i}"}
            r = client.post(f"{url}/openai/chat/completions", json=body, headers={"x-picometer-workflow": f"job-{i}"})
            assert r.status_code == 400, r.status_code
        for _ in range(3):
            r = client.post(f"{url}/openai/chat/completions", json={**CHAT, "model": "m" * 9_000_000})
            assert r.status_code == 400, r.status_code


HOSTILE = ("huge_json", "gzip_bomb", "sse_no_blank", "sse_no_newline", "absurd_usage")
BIG_ANSWERS_AT_ONCE = 12


def abuse_from_the_provider(url: str) -> None:
    """What a broken provider sends (tests/hostile.py): endless JSON, a 1 GB gzip bomb, SSE without blank lines
    or newlines, absurd usage; then twelve 8 MB answers at once."""
    with httpx.Client(timeout=120, trust_env=False) as client:
        for kind in HOSTILE:
            body = {**CHAT, "max_tokens": 20, "stream": kind.startswith("sse")}
            r = client.post(f"{url}/evil/chat/completions", json=body, headers={"x-hostile": kind})
            assert r.status_code in (200, 502), (kind, r.status_code)

    async def big_answers() -> None:
        async with httpx.AsyncClient(timeout=120, trust_env=False) as client:
            answers = await asyncio.gather(
                *(
                    client.post(f"{url}/evil/chat/completions", json=CHAT, headers={"x-hostile": "big_answer"})
                    for _ in range(BIG_ANSWERS_AT_ONCE)
                )
            )
        assert all(a.status_code == 200 for a in answers)

    asyncio.run(big_answers())


PAUSE_S = 0.001  # between calls: what one proxy does after its reply never lands in the next one's timing


def in_turns(rounds: int, urls: list[str]) -> Iterator[tuple[int, int, str]]:
    """(round, which URL, URL) for every call of `rounds` rounds: the URLs take turns, the order rotating every
    round, each call PAUSE_S after the one before."""
    order = list(enumerate(urls))
    for i in range(rounds):
        k = i % len(urls)
        for which, url in order[k:] + order[:k]:
            time.sleep(PAUSE_S)
            yield i, which, url


PACED_ROUNDS = int(os.environ.get("BENCH_PACED_ROUNDS", "200"))
PACE_S = 0.002  # between a paced stream's chunks: a fast model; real ones leave 10-50 ms
# The paced client asks for the usage chunk itself, so all three get the same events: the simulator paces every
# event, and the usage chunk picometer would otherwise ask for would cost a pause a real provider does not make.
PACED = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}


def timed_paced(client: httpx.Client, url: str) -> tuple[float, float]:
    """A stream whose chunks come PACE_S apart, as a model writes them: (first byte, last byte) in ms."""
    start = time.perf_counter()
    first = None
    with client.stream("POST", url, json=PACED) as r:
        for _ in r.iter_bytes():
            first = first or time.perf_counter()
    end = time.perf_counter()
    assert r.status_code == 200 and first is not None, r.status_code
    return (first - start) * 1000, (end - start) * 1000


def measure_paced(client: httpx.Client, urls: list[str]) -> list[tuple[list[float], list[float]]]:
    """Each URL's (first-byte, last-byte) latencies over PACED_ROUNDS rounds, taking turns as measure() does."""
    sinks: list[tuple[list[float], list[float]]] = [([], []) for _ in urls]
    for i, which, url in in_turns(10 + PACED_ROUNDS, urls):
        first, last = timed_paced(client, url)
        if i >= 10:
            sinks[which][0].append(first)
            sinks[which][1].append(last)
    return sinks


def cpu_s(pid: int) -> float:
    """CPU time (user and system) the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(
    client: httpx.Client, urls: list[str], stream: bool, pids: list[int]
) -> tuple[list[list[float]], list[float]]:
    """Each URL's latencies, and each process's CPU per call (µs) over the measured rounds."""
    sinks: list[list[float]] = [[] for _ in urls]
    cpu: list[float] = []
    for i, which, url in in_turns(WARMUP + ROUNDS, urls):
        if i == WARMUP and not cpu:  # the CPU counts start with the first measured round
            cpu = [cpu_s(pid) for pid in pids]
        ms = timed(client, url, stream)
        if i >= WARMUP:
            sinks[which].append(ms)
    return sinks, [(cpu_s(pid) - before) / ROUNDS * 1e6 for pid, before in zip(pids, cpu, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sim", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--bare", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sim:
        serve_sim(int(args.sim[0]), float(args.sim[1]))
        return
    if args.bare:
        serve_bare(int(args.bare[0]), args.bare[1], args.bare[2])
        return

    sim_port, paced_port, pm_port, bare_port = free_port(), free_port(), free_port(), free_port()
    evil = HostileServer().__enter__()  # a broken provider, in a thread of this process
    work = Path(tempfile.mkdtemp(prefix="picometer-bench-"))
    config = work / "config.toml"
    config.write_text(
        f"""
[server]
listen = "127.0.0.1:{pm_port}"
[storage]
data_dir = "{work / "data"}"
log_dir = "{work / "logs"}"
[providers.openai]
kind = "openai"
base_url = "http://127.0.0.1:{sim_port}/v1"
[providers.paced]
kind = "openai"
base_url = "http://127.0.0.1:{paced_port}/v1"
[providers.evil]
kind = "openai"
base_url = "{evil.url}/v1"
max_response_bytes = 20000000
"""
    )
    sim = subprocess.Popen([sys.executable, __file__, "--sim", str(sim_port), "0"])
    paced = subprocess.Popen([sys.executable, __file__, "--sim", str(paced_port), str(PACE_S)])
    upstreams = [f"http://127.0.0.1:{sim_port}/v1", f"http://127.0.0.1:{paced_port}/v1"]
    bare = subprocess.Popen([sys.executable, __file__, "--bare", str(bare_port), *upstreams])
    daemon = subprocess.Popen(
        [sys.executable, "-m", "picometer", "run", "--config", str(config)], stderr=subprocess.DEVNULL
    )
    # The proxies (taking turns, never busy together) on one core, the client and the provider on the other,
    # as a real provider is on another machine.
    pinned = (os.cpu_count() or 1) >= 2 and hasattr(os, "sched_setaffinity")
    if pinned:
        for process, core in ((daemon, 1), (bare, 1), (sim, 0), (paced, 0)):
            os.sched_setaffinity(process.pid, {core})
        os.sched_setaffinity(0, {0})
    try:
        to_healthy = wait_healthy(f"http://127.0.0.1:{pm_port}/-/health")
        wait_healthy(f"http://127.0.0.1:{sim_port}/v1/models")
        wait_healthy(f"http://127.0.0.1:{paced_port}/v1/models")
        wait_healthy(f"http://127.0.0.1:{bare_port}/openai/models")
        time.sleep(1.0)
        idle_rss = rss_mb(daemon.pid)
        direct = f"http://127.0.0.1:{sim_port}/v1/chat/completions"
        via = f"http://127.0.0.1:{pm_port}/openai/chat/completions"
        floor = f"http://127.0.0.1:{bare_port}/openai/chat/completions"
        rows = []
        cpus: list[tuple[float, float]] = []
        # The same socket options picometer uses upstream, so the baseline has no Nagle stall either.
        transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
        with httpx.Client(timeout=30, trust_env=False, transport=transport) as client:
            for stream in (False, True):
                (d, b, v), (b_cpu, v_cpu) = measure(client, [direct, floor, via], stream, [bare.pid, daemon.pid])
                rows.append(("streaming" if stream else "non-streaming", d, b, v))
                cpus.append((b_cpu, v_cpu))
            paced_urls = [u.replace("/openai/", "/paced/") for u in (floor, via)]
            pace = measure_paced(client, [f"http://127.0.0.1:{paced_port}/v1/chat/completions", *paced_urls])
        loaded_rss = rss_mb(daemon.pid)
        raw = b"".join(p.read_bytes() for p in sorted((work / "logs").glob("usage-*.jsonl")))
        records = raw.count(b"\n")
        gzipped = len(gzip.compress(raw))  # what rotation leaves on disk
        abuse(f"http://127.0.0.1:{pm_port}")
        abused_rss = rss_mb(daemon.pid)
        abuse_from_the_provider(f"http://127.0.0.1:{pm_port}")
        provider_abused_rss, peak_rss = rss_mb(daemon.pid), rss_mb(daemon.pid, "VmHWM")
    finally:
        evil.__exit__()
        for process in (daemon, sim, paced, bare):
            process.terminate()
        for process in (daemon, sim, paced, bare):
            process.wait(10)

    print(
        f"picometer overhead, {ROUNDS} interleaved rounds per mode after {WARMUP} warm-up, "
        f"{os.cpu_count()} cores ({PINNING if pinned else 'unpinned'}), "
        f"Python {sys.version.split()[0]}"
    )
    print()
    print(f"{'mode':<15}{'':>6}{'direct ms':>11}{'bare ms':>9}{'via ms':>8}{'bare adds':>11}{'picometer adds':>16}")
    for name, d, b, v in rows:
        for label, q in (("p50", 0.50), ("p90", 0.90), ("p99", 0.99)):
            print(
                f"{name:<15}{label:>6}{pct(d, q):>11.2f}{pct(b, q):>9.2f}{pct(v, q):>8.2f}"
                f"{pct(b, q) - pct(d, q):>11.2f}{pct(v, q) - pct(d, q):>16.2f}"
            )
        fd, fb, fv = statistics.fmean(d), statistics.fmean(b), statistics.fmean(v)
        print(f"{'':<15}{'mean':>6}{fd:>11.2f}{fb:>9.2f}{fv:>8.2f}{fb - fd:>11.2f}{fv - fd:>16.2f}")
    print()
    for (name, d, b, v), (b_cpu, v_cpu) in zip(rows, cpus, strict=True):
        bare_added, pm_added = pct(b, 0.5) - pct(d, 0.5), pct(v, 0.5) - pct(d, 0.5)
        print(
            f"{name}: picometer's added p50 is {pm_added / bare_added:.2f}x the bare proxy's; "
            f"CPU per call {v_cpu:.0f} µs against the bare proxy's {b_cpu:.0f} µs"
        )
    print()
    print(
        f"streaming, paced ({PACE_S * 1000:g} ms between chunks, as a model writes them), "
        f"{PACED_ROUNDS} interleaved rounds: p50 ms"
    )
    print(f"{'':<15}{'':>6}{'direct':>11}{'bare':>9}{'via':>8}{'bare adds':>11}{'picometer adds':>16}")
    for label, part in (("first byte", 0), ("last byte", 1)):
        d50, b50, v50 = (pct(sink[part], 0.5) for sink in pace)
        print(f"{label:<15}{'':>6}{d50:>11.2f}{b50:>9.2f}{v50:>8.2f}{b50 - d50:>11.2f}{v50 - d50:>16.2f}")
    print()
    print(f"time to healthy (process start to /-/health 200): {to_healthy * 1000:.0f} ms")
    print(f"RSS idle after start: {idle_rss:.1f} MB; after {records} requests: {loaded_rss:.1f} MB")
    print(f"RSS after the abuse ({ABUSE_NAMES} new names, 3 calls with a 9 MB model name): {abused_rss:.1f} MB")
    print(
        f"RSS after a broken provider ({', '.join(HOSTILE)}, {BIG_ANSWERS_AT_ONCE} 8 MB answers at once): "
        f"{provider_abused_rss:.1f} MB; peak over the whole run: {peak_rss:.1f} MB"
    )
    print(
        f"usage log: {len(raw) / max(records, 1):.0f} bytes per request raw, "
        f"{gzipped / max(records, 1):.0f} after gzip ({records} real records of this run)"
    )


if __name__ == "__main__":
    main()
