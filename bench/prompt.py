"""make bench: what a prompt's size costs on the request path. Admission (route, tags, the JSON body, its depth
bound, the reservation) and the prompt's fingerprints (prompt_hash, conversation), in process, for the bench's
one-line chat and for an agent's 100 KB prompt. The fingerprints are taken once the request is out, while the
provider works (gateway.pool), or when the record is built: for a model call they are off the request path."""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root

from picometer.compose import build
from picometer.config import load_config
from picometer.gateway.admin import header_map
from picometer.gateway.settle import Facts

ROUNDS = int(os.environ.get("BENCH_PROMPT_ROUNDS", "400"))
WORDS = ["the", "soil", "is", "dry", "water", "basil", "tomorrow", "check", "sensor", "log", "humidity"]


def agent_body(turns: int = 150) -> dict[str, Any]:
    """An agent's call after `turns` steps: a system prompt, user and assistant turns, tool results, ten tools."""
    rng = random.Random(1)
    messages: list[dict[str, Any]] = [{"role": "system", "content": "You are a careful home automation agent. " * 20}]
    for i in range(turns):
        text = " ".join(rng.choice(WORDS) for _ in range(100))
        messages.append({"role": "user" if i % 3 == 0 else "assistant", "content": text})
        if i % 3 == 2:
            result = json.dumps({"reading": i, "ok": True, "values": list(range(20))})
            messages.append({"role": "tool", "tool_call_id": f"call_{i}", "content": result})
    tool = {"type": "object", "properties": {"x": {"type": "string"}}}
    tools = [{"type": "function", "function": {"name": f"t{i}", "description": "a tool " * 10, "parameters": tool}}]
    return {"model": "gpt-4o-mini", "messages": messages, "tools": tools * 10}


async def admission_us(body: bytes) -> tuple[float, float]:
    """Microseconds per call: admission, then taking the fingerprints of the admitted call."""
    work = Path(tempfile.mkdtemp(prefix="picometer-bench-prompt-"))
    config = work / "config.toml"
    config.write_text(
        f'[storage]\ndata_dir = "{work / "data"}"\nlog_dir = "{work / "logs"}"\n'
        '[providers.openai]\nkind = "openai"\nbase_url = "http://127.0.0.1:9/v1"\n'
    )
    gateway = build(load_config(config, {})).gateway
    admission, clock = gateway.admission, gateway.clock
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    scope = {"type": "http", "method": "POST", "path": "/openai/chat/completions", "query_string": b"", "headers": raw}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    admitting = fingerprinting = 0.0
    for i in range(ROUNDS + 20):
        start = time.perf_counter()
        facts = Facts(os.urandom(8).hex(), clock.now(), clock.monotonic())
        req = await admission.admit(facts, scope, receive, header_map(raw))
        admitted = time.perf_counter()
        assert req.fingerprint is not None
        req.fingerprint.take()
        if i >= 20:  # after a warm-up
            admitting += admitted - start
            fingerprinting += time.perf_counter() - admitted
        admission.release(req)
    return admitting / ROUNDS * 1e6, fingerprinting / ROUNDS * 1e6


def main() -> None:
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello to the benchmark."}]}
    print(f"a prompt's size on the request path, in process, {ROUNDS} calls each, Python {sys.version.split()[0]}")
    print()
    print(f"{'prompt':<28}{'body KB':>8}{'admission us':>14}{'fingerprints us':>17}")
    for name, body in (("one-line chat", chat), ("agent, 150 turns, 10 tools", agent_body())):
        raw = json.dumps(body).encode()
        admit, fingerprints = asyncio.run(admission_us(raw))
        print(f"{name:<28}{len(raw) / 1024:>8.0f}{admit:>14.0f}{fingerprints:>17.0f}")


if __name__ == "__main__":
    main()
