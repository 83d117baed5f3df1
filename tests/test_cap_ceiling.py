"""A cap is a ceiling: calls that ask for the dearest billing (priority tier, 1-hour cache writes, web search,
images by URL), answered by a provider that bills the most each request allows, never spend past it, however
many run at once. And an image sent inline is counted as an image, not as its base64 text."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from picometer.simulator import request_body
from tests.servers import AppServer, GatewayServer, gateway_config

CAP = 1.00
# The provider's own bound on one image (docs.anthropic.com/en/docs/build-with-claude/vision: about
# 1,600 tokens for the largest image that is not downscaled); OpenAI's high-detail tiles for gpt-4o
# (platform.openai.com/docs/guides/images-vision: 85 + 170 per 512 px tile, 2048x768 -> 8 tiles = 1,445).
ANTHROPIC_URL_IMAGE_TOKENS = 1_600
OPENAI_URL_IMAGE_TOKENS = 1_445

# Real prices, per 1M tokens unless said (cited; written out here, not taken from picometer):
# openai.com/api/pricing, gpt-4o Priority: $4.25 in, $17.00 out.
GPT4O_PRIORITY = (4.25, 17.00)
# anthropic.com/pricing, Claude Sonnet 4.5: $3 in, $6 for 1-hour cache writes, $15 out; web search $10 / 1,000.
SONNET_IN, SONNET_WRITE_1H, SONNET_OUT, SEARCH = 3.00, 6.00, 15.00, 0.010


IMAGE_PARTS = ("image", "image_url")


def _without_images(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_images(v) for k, v in node.items() if node.get("type") not in IMAGE_PARTS}
    if isinstance(node, list):
        return [_without_images(v) for v in node if not (isinstance(v, dict) and v.get("type") in IMAGE_PARTS)]
    return node


def _strings(node: Any) -> int:
    if isinstance(node, str):
        return len(node.encode())
    if isinstance(node, dict):
        return sum(_strings(v) for v in node.values())
    if isinstance(node, list):
        return sum(_strings(v) for v in node)
    return 0


def text_tokens(body: dict[str, Any]) -> int:
    """The most input tokens the text can be: one per 3 bytes of UTF-8 (no byte-level BPE does worse on real
    text), plus the message framing."""
    parts = _without_images([body.get("messages"), body.get("system"), body.get("input"), body.get("tools")])
    return math.ceil(_strings(parts) / 3) + 16


def images(body: dict[str, Any]) -> int:
    """Image parts (by URL or inline), each billed at the provider's most for one image."""
    text = json.dumps(body.get("messages"))
    return text.count('"type": "image"') + text.count('"type": "image_url"')


async def maximal(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A provider that bills every call the most its request allows."""
    raw = await request_body(scope, receive, send)
    if raw is None:
        return
    body = json.loads(raw)
    path = scope["path"]
    if path.endswith("/messages"):
        tokens = text_tokens(body) + images(body) * ANTHROPIC_URL_IMAGE_TOKENS
        searches = sum(t.get("max_uses", 0) for t in body.get("tools", []))
        one_hour = "1h" in json.dumps(body)
        usage = {
            "input_tokens": 0 if one_hour else tokens,
            "cache_creation_input_tokens": tokens if one_hour else 0,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": tokens if one_hour else 0},
            "cache_read_input_tokens": 0,
            "output_tokens": body["max_tokens"],
            "server_tool_use": {"web_search_requests": searches},
        }
        answer: dict[str, Any] = {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": [{"type": "text", "text": "ok"}],
            "stop_reason": "max_tokens",
            "usage": usage,
        }
    else:
        tokens = text_tokens(body) + images(body) * OPENAI_URL_IMAGE_TOKENS
        answer = {
            "id": "c1",
            "object": "chat.completion",
            "model": body["model"],
            "service_tier": "priority",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "length"}],
            "usage": {"prompt_tokens": tokens, "completion_tokens": body["max_completion_tokens"], "total_tokens": 0},
        }
    data = json.dumps(answer).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": data})


def real_cost(rec: dict[str, Any], request: dict[str, Any]) -> float:
    """What the maximal provider billed for this record's call, from the request (independent of picometer)."""
    if rec["provider"] == "anthropic":
        tokens = text_tokens(request) + images(request) * ANTHROPIC_URL_IMAGE_TOKENS
        one_hour = "1h" in json.dumps(request)
        searches = sum(t.get("max_uses", 0) for t in request.get("tools", []))
        inp = tokens * (SONNET_WRITE_1H if one_hour else SONNET_IN)
        return (inp + request["max_tokens"] * SONNET_OUT) / 1e6 + searches * SEARCH
    tokens = text_tokens(request) + images(request) * OPENAI_URL_IMAGE_TOKENS
    return (tokens * GPT4O_PRIORITY[0] + request["max_completion_tokens"] * GPT4O_PRIORITY[1]) / 1e6


@pytest.fixture
def upstream() -> Iterator[str]:
    with AppServer(maximal) as server:
        yield server.url


PROMPT = "Look at the greenhouse camera and tell me whether the tomatoes need water. " * 20

REQUESTS: dict[str, tuple[str, dict[str, Any]]] = {
    "priority": (
        "openai/chat/completions",
        {
            "model": "gpt-4o",
            "service_tier": "priority",
            "max_completion_tokens": 2000,
            "messages": [{"role": "user", "content": PROMPT}],
        },
    ),
    "cache-1h": (
        "anthropic/v1/messages",
        {
            "model": "claude-sonnet-4-5",
            "max_tokens": 2000,
            "system": [{"type": "text", "text": PROMPT, "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
            "messages": [{"role": "user", "content": "water?"}],
        },
    ),
    "web-search": (
        "anthropic/v1/messages",
        {
            "model": "claude-sonnet-4-5",
            "max_tokens": 1000,
            "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 5}],
            "messages": [{"role": "user", "content": PROMPT}],
        },
    ),
    "images-by-url": (
        "anthropic/v1/messages",
        {
            "model": "claude-sonnet-4-5",
            "max_tokens": 1000,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image", "source": {"type": "url", "url": f"https://cam.example/{i}.jpg"}}
                        for i in range(8)
                    ]
                    + [{"type": "text", "text": PROMPT}],
                }
            ],
        },
    ),
    "openai-images-by-url": (
        "openai/chat/completions",
        {
            "model": "gpt-4o",
            "service_tier": "priority",
            "max_completion_tokens": 1000,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": f"https://cam.example/{i}.jpg"}} for i in range(8)
                    ]
                    + [{"type": "text", "text": PROMPT}],
                }
            ],
        },
    ),
}


def gateway(upstream: str, tmp: Path) -> GatewayServer:
    raw = gateway_config(
        upstream,
        tmp,
        providers={
            "openai": {"kind": "openai", "base_url": f"{upstream}/v1"},
            "anthropic": {"kind": "anthropic", "base_url": upstream},
        },
        budgets={"daily_usd": CAP},
    )
    return GatewayServer(raw)


async def loop_until_blocked(url: str, path: str, body: dict[str, Any], calls: int) -> list[int]:
    async with httpx.AsyncClient(timeout=60, trust_env=False) as client:
        answers = await asyncio.gather(*(client.post(f"{url}/{path}", json=body) for _ in range(calls)))
    return [a.status_code for a in answers]


@pytest.mark.parametrize("case", sorted(REQUESTS))
def test_calls_billed_the_most_they_allow_never_pass_the_daily_cap(upstream: str, tmp_path: Path, case: str) -> None:
    path, body = REQUESTS[case]
    with gateway(upstream, tmp_path) as gw:
        statuses = asyncio.run(loop_until_blocked(gw.url, path, body, 40))
        records = gw.records(len(statuses))
    ok = [r for r in records if r["status"] == "ok"]
    assert ok and 429 in statuses, f"{case}: some calls fit the cap and the rest are refused ({statuses})"
    spent = sum(real_cost(r, body) for r in ok)
    assert spent <= CAP, f"{case}: {len(ok)} calls really cost ${spent:.4f}, past the ${CAP} cap"
    for r in ok:  # and picometer charged each what it really cost
        assert r["cost_usd"] == pytest.approx(real_cost(r, body), rel=1e-9), r


def png(width: int, height: int, size: int) -> bytes:
    """A real PNG header of the given dimensions, padded with an incompressible IDAT to `size` bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    head = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    return head + chunk(b"IDAT", os.urandom(size - len(head) - 24)) + chunk(b"IEND", b"")


def test_a_photo_sent_inline_is_counted_as_an_image_and_fits_a_one_dollar_cap(upstream: str, tmp_path: Path) -> None:
    photo = base64.b64encode(png(1092, 1092, 750_000)).decode()
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": photo}},
                    {"type": "text", "text": "Is this tomato ripe?"},
                ],
            }
        ],
    }
    assert len(photo) >= 1_000_000  # as text this alone would be ~333k tokens, $1 at Sonnet's input price
    with gateway(upstream, tmp_path) as gw:
        answer = httpx.post(f"{gw.url}/anthropic/v1/messages", json=body, timeout=30, trust_env=False)
        [rec] = gw.records(1)
    assert answer.status_code == 200, answer.text
    # docs.anthropic.com vision: 1092x1092 is about 1,590 tokens; the call costs about two cents, not $1.
    assert rec["status"] == "ok" and rec["cost_usd"] == pytest.approx(real_cost(rec, body), rel=1e-9)
    assert rec["cost_usd"] < 0.03
