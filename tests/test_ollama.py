"""The real ollama client through picometer against a loopback Ollama: chat and generate, streamed (NDJSON) and
not, and embed, each one record with Ollama's own counts (prompt_eval_count in, eval_count out) at cost 0;
a stream is judged by its `done: true` line; a dollar cap never blocks a free local model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest

from tests.fake_ollama import REPLY, FakeOllama
from tests.servers import Gateways, GatewayServer

MESSAGES = [{"role": "user", "content": "How warm is the greenhouse tonight, and should I water the tomatoes?"}]
PROMPT = "Why do tomatoes split after heavy rain?"
TAILS = [0, 20, 100]


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    with FakeOllama() as server:
        yield server


@pytest.fixture
def make(fake: FakeOllama, tmp_path: Path) -> Iterator[Gateways]:
    """Gateways with [providers.ollama] of kind "ollama" on the fake (free by default, nothing said about it)."""
    with Gateways(fake.url, tmp_path, providers={"ollama": {"kind": "ollama", "base_url": fake.url}}) as gateways:
        yield gateways


@pytest.fixture
def gw(make: Gateways) -> GatewayServer:
    return make()


def client(gw: GatewayServer) -> ollama.Client:
    return ollama.Client(host=f"{gw.url}/ollama", timeout=10)


def assert_free_ok(rec: dict[str, Any], model: str, stream: bool, inp: int, out: int) -> None:
    assert (rec["status"], rec["error_type"], rec["http_status"]) == ("ok", None, 200), rec
    assert (rec["provider"], rec["model"], rec["stream"]) == ("ollama", model, stream)
    assert (rec["usage_source"], rec["input_tokens"], rec["output_tokens"]) == ("provider", inp, out)
    assert rec["cost_usd"] == 0


def test_the_fake_speaks_ollama_as_the_client_expects(fake: FakeOllama) -> None:
    # the client straight at the fake, no picometer: what the tests below rest on
    c = ollama.Client(host=fake.url, timeout=10)
    fake.counts = (26, 282)
    whole = c.chat(model="llama3.2", messages=MESSAGES)
    parts = list(c.chat(model="llama3.2", messages=MESSAGES, stream=True))
    assert whole.message.content == "".join(p.message.content or "" for p in parts) == REPLY
    assert [p.done for p in parts] == [False] * fake.chunks + [True]
    assert (parts[-1].prompt_eval_count, parts[-1].eval_count, parts[-1].done_reason) == (26, 282, "stop")
    assert (whole.prompt_eval_count, whole.eval_count) == (26, 282)
    assert list(c.generate(model="llama3.2", prompt=PROMPT, stream=True))[-1].eval_count == 282
    assert c.embed(model="all-minilm", input=["a", "b"]).prompt_eval_count == 26
    with pytest.raises(ollama.ResponseError) as missing:
        c.chat(model="not-pulled", messages=MESSAGES)
    assert missing.value.status_code == 404 and "not found" in missing.value.error


@pytest.mark.parametrize("stream", [False, True])
def test_chat_is_one_free_record_with_ollamas_counts(fake: FakeOllama, gw: GatewayServer, stream: bool) -> None:
    fake.counts = (26, 282)
    c = client(gw)
    if stream:
        parts = list(c.chat(model="llama3.2", messages=MESSAGES, stream=True))
        assert "".join(p.message.content or "" for p in parts) == REPLY
        last = parts[-1]
    else:
        last = c.chat(model="llama3.2", messages=MESSAGES)
        assert last.message.content == REPLY
    assert last.done and (last.prompt_eval_count, last.eval_count) == (26, 282)
    [rec] = gw.records(1)
    assert_free_ok(rec, "llama3.2", stream, 26, 282)
    assert fake.requests[0].path == "/api/chat" and fake.requests[0].json["stream"] is stream


@pytest.mark.parametrize("stream", [False, True])
def test_generate_is_one_free_record_with_ollamas_counts(fake: FakeOllama, gw: GatewayServer, stream: bool) -> None:
    c = client(gw)
    if stream:
        parts = list(c.generate(model="qwen3:0.6b", prompt=PROMPT, stream=True))
        assert "".join(p.response or "" for p in parts) == REPLY
        last = parts[-1]
    else:
        last = c.generate(model="qwen3:0.6b", prompt=PROMPT)
        assert last.response == REPLY
    assert last.done and last.prompt_eval_count and last.eval_count
    [rec] = gw.records(1)
    assert_free_ok(rec, "qwen3:0.6b", stream, last.prompt_eval_count, last.eval_count)
    assert fake.requests[0].path == "/api/generate"


def test_a_call_that_does_not_say_stream_is_streamed_and_metered_as_a_stream(
    fake: FakeOllama, gw: GatewayServer
) -> None:
    # Ollama streams unless told "stream": false; curl users and some clients never say
    fake.counts = (11, 33)
    body = {"model": "llama3.2", "messages": MESSAGES}
    with httpx.stream("POST", f"{gw.url}/ollama/api/chat", json=body, timeout=10, trust_env=False) as r:
        assert r.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in r.iter_lines() if line]
    assert len(lines) > 1 and lines[-1]["done"] is True and "stream" not in fake.requests[0].json
    [rec] = gw.records(1)
    assert_free_ok(rec, "llama3.2", True, 11, 33)


def test_embed_is_one_free_record_with_the_prompt_count(fake: FakeOllama, gw: GatewayServer) -> None:
    embedded = client(gw).embed(model="nomic-embed-text", input=["tomatoes like warm nights", "basil does not"])
    assert len(embedded.embeddings) == 2 and embedded.prompt_eval_count
    [rec] = gw.records(1)
    assert_free_ok(rec, "nomic-embed-text", False, embedded.prompt_eval_count, 0)
    assert fake.requests[0].path == "/api/embed"


@pytest.mark.parametrize("ms", TAILS)
def test_a_stream_read_to_done_is_ok_however_late_the_body_ends(fake: FakeOllama, gw: GatewayServer, ms: int) -> None:
    fake.counts = (40, 21)
    fake.tail_ms = ms
    parts = list(client(gw).chat(model="llama3.2", messages=MESSAGES, stream=True))
    assert parts[-1].done
    [rec] = gw.records(1)
    assert_free_ok(rec, "llama3.2", True, 40, 21)


@pytest.mark.parametrize("endpoint", ["chat", "generate"])
def test_a_stream_cut_before_done_is_truncated(fake: FakeOllama, gw: GatewayServer, endpoint: str) -> None:
    fake.done = False
    c = client(gw)
    if endpoint == "chat":
        done = [p.done for p in c.chat(model="llama3.2", messages=MESSAGES, stream=True)]
    else:
        done = [p.done for p in c.generate(model="llama3.2", prompt=PROMPT, stream=True)]
    assert done and not any(done)
    [rec] = gw.records(1)
    assert (rec["status"], rec["error_type"], rec["stream"]) == ("error", "stream_truncated", True)
    # Ollama tells its counts only on the done line: none came, so they are estimated, never zero
    assert rec["usage_source"] == "estimated" and rec["input_tokens"] > 0 and rec["output_tokens"] > 0
    assert rec["cost_usd"] == 0


def test_a_dollar_cap_does_not_block_free_local_calls(fake: FakeOllama, make: Gateways) -> None:
    capped = make(budgets={"daily_usd": 0.000001}, workflows={"garden": {"daily_usd": 0.000001}})
    c = ollama.Client(host=f"{capped.url}/w/garden/ollama", timeout=10)
    for _ in range(3):
        assert c.chat(model="llama3.2", messages=MESSAGES).message.content == REPLY
    assert list(c.generate(model="llama3.2", prompt=PROMPT, stream=True))[-1].done
    assert c.embed(model="all-minilm", input="hello").embeddings
    records = capped.records(5)
    assert [(r["status"], r["workflow"], r["cost_usd"]) for r in records] == [("ok", "garden", 0)] * 5
    assert all(r["input_tokens"] > 0 for r in records)
    assert len(fake.requests) == 5
