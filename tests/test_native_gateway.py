"""Gemini's and Ollama's own APIs through the gateway, spoken raw (the SDK tests are in test_gemini and
test_ollama): the key swapped where the client put it, streams judged by their last chunk, refusals in shape."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.replay import ReplayServer
from tests.servers import Gateways

FLASH = "v1beta/models/gemini-2.5-flash"
KEY = "pm-garden-key-0001"  # the workflow's virtual key
ASK = {"contents": [{"role": "user", "parts": [{"text": "water the tomatoes?"}]}]}
DONE = {
    "candidates": [{"content": {"role": "model", "parts": [{"text": "Yes."}]}, "finishReason": "STOP"}],
    "usageMetadata": {"promptTokenCount": 1000, "candidatesTokenCount": 200, "thoughtsTokenCount": 100},
    "modelVersion": "gemini-2.5-flash",
}
# Google's price page, gemini-2.5-flash: $0.30 per 1M input, $2.50 per 1M output including thinking.
DONE_COST = (1000 * 0.30 + 300 * 2.50) / 1e6


@pytest.fixture
def upstream() -> Iterator[ReplayServer]:
    with ReplayServer() as server:
        yield server


@pytest.fixture
def gateways(upstream: ReplayServer, tmp_path: Path) -> Iterator[Gateways]:
    providers = {
        "gemini": {"kind": "gemini", "base_url": upstream.url, "api_key": "env:GEMINI_KEY"},
        "ollama": {"kind": "ollama", "base_url": upstream.url},
        "openai": {"kind": "openai", "base_url": upstream.url},
    }
    workflows = {"garden": {"keys": [KEY]}}
    with Gateways(upstream.url, tmp_path, providers=providers, workflows=workflows) as g:
        yield g


ENV = {"GEMINI_KEY": "AIza-real"}


def test_a_virtual_key_in_the_query_is_swapped_there_and_the_stream_is_metered(
    upstream: ReplayServer, gateways: Gateways
) -> None:
    gw = gateways(env=ENV)
    first = {"candidates": [{"content": {"parts": [{"text": "Ye"}]}}], "usageMetadata": {"promptTokenCount": 1000}}
    upstream.answer_sse([first, DONE])
    url = f"{gw.url}/gemini/{FLASH}:streamGenerateContent?alt=sse&key={KEY}"
    with httpx.stream("POST", url, json=ASK, trust_env=False, timeout=10) as r:
        body = b"".join(r.iter_bytes())
    assert r.status_code == 200 and b"finishReason" in body
    [sent] = upstream.requests
    assert sent.path.endswith(f"/{FLASH}:streamGenerateContent?alt=sse&key=AIza-real")
    assert "x-goog-api-key" not in sent.headers and KEY not in json.dumps(sent.headers)
    [rec] = gw.records(1)
    assert (rec["status"], rec["workflow"], rec["model"], rec["stream"]) == ("ok", "garden", "gemini-2.5-flash", True)
    assert (rec["input_tokens"], rec["output_tokens"], rec["reasoning_tokens"]) == (1000, 300, 100)
    assert rec["cost_usd"] == pytest.approx(DONE_COST)


def test_a_virtual_key_in_the_header_is_swapped_in_the_header(upstream: ReplayServer, gateways: Gateways) -> None:
    gw = gateways(env=ENV)
    upstream.answer_json(DONE)
    r = httpx.post(
        f"{gw.url}/gemini/{FLASH}:generateContent", json=ASK, headers={"x-goog-api-key": KEY}, trust_env=False
    )
    assert r.status_code == 200 and float(r.headers["x-picometer-cost-usd"]) == pytest.approx(DONE_COST)
    [sent] = upstream.requests
    assert sent.headers["x-goog-api-key"] == "AIza-real" and "key=" not in sent.path
    [rec] = gw.records(1)
    assert (rec["status"], rec["workflow"], rec["stream"]) == ("ok", "garden", False)
    assert rec["prompt_hash"] and rec["conversation"], "a Gemini prompt is fingerprinted like the others"


def test_a_gemini_stream_cut_before_its_finish_chunk_is_truncated(upstream: ReplayServer, gateways: Gateways) -> None:
    gw = gateways(env=ENV)
    upstream.answer_sse([{"candidates": [{"content": {"parts": [{"text": "Ye"}]}}]}])
    url = f"{gw.url}/gemini/{FLASH}:streamGenerateContent?alt=sse"
    with httpx.stream("POST", url, json=ASK, trust_env=False, timeout=10) as r:
        r.read()
    [rec] = gw.records(1)
    assert (rec["status"], rec["error_type"], rec["usage_source"]) == ("error", "stream_truncated", "estimated")
    assert rec["cost_usd"] > 0


def test_a_gemini_refusal_comes_in_googles_error_shape(upstream: ReplayServer, gateways: Gateways) -> None:
    gw = gateways(env=ENV, budgets={"daily_usd": 0.0001})
    r = httpx.post(f"{gw.url}/gemini/{FLASH}:generateContent", json=ASK, trust_env=False)
    assert r.status_code == 429
    error = r.json()["error"]
    assert (error["code"], error["status"], error["type"]) == (429, "RESOURCE_EXHAUSTED", "budget_exceeded")
    assert upstream.requests == []


def test_ollama_streams_ndjson_by_default_and_is_free(upstream: ReplayServer, gateways: Gateways) -> None:
    gw = gateways(env=ENV, budgets={"daily_usd": 0.0001})
    lines = [
        {"model": "llama3.2", "message": {"role": "assistant", "content": "Yes"}, "done": False},
        {
            "model": "llama3.2",
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": "stop",
            "prompt_eval_count": 26,
            "eval_count": 3,
        },
    ]
    upstream.answer_bytes(b"".join(json.dumps(x).encode() + b"\n" for x in lines), b"application/x-ndjson")
    chat = {"model": "llama3.2", "messages": [{"role": "user", "content": "water?"}]}
    with httpx.stream("POST", f"{gw.url}/ollama/api/chat", json=chat, trust_env=False, timeout=10) as r:
        got = [json.loads(line) for line in r.iter_lines() if line]
    assert got == lines
    [rec] = gw.records(1)
    assert (rec["status"], rec["stream"], rec["input_tokens"], rec["output_tokens"]) == ("ok", True, 26, 3)
    assert rec["cost_usd"] == 0


def test_an_ollama_stream_without_its_done_line_is_truncated(upstream: ReplayServer, gateways: Gateways) -> None:
    gw = gateways(env=ENV)
    upstream.answer_bytes(b'{"model":"llama3.2","response":"Ye","done":false}\n', b"application/x-ndjson")
    with httpx.stream(
        "POST", f"{gw.url}/ollama/api/generate", json={"model": "llama3.2", "prompt": "hi"}, trust_env=False
    ) as r:
        r.read()
    [rec] = gw.records(1)
    assert (rec["status"], rec["error_type"]) == ("error", "stream_truncated")
