"""Cost truth: one hand-written provider answer per billing case, through the real gateway, against the public price.

Each answer is modelled on the provider's documented response shape and served by a ReplayServer; the record's
every token field, tool fee, service tier and cost is checked against arithmetic written out here from the
price page cited beside each number (never picometer's price code, never genai-prices).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.clocks import ManualClock
from tests.replay import ReplayServer
from tests.sdks import ant, oa
from tests.servers import Gateways, GatewayServer, stream_post

M = 1_000_000  # prices are per 1M tokens
TOKEN_FIELDS = (
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
    "reasoning_tokens",
    "audio_input_tokens",
    "audio_output_tokens",
)
MESSAGES: Any = [{"role": "user", "content": "What changed in the greenhouse overnight?"}]
CREATED = 1764504000


# --- the gateway in front of the replay provider ----------------------------------------------------------------


def providers(url: str) -> dict[str, Any]:
    return {
        "openai": {"kind": "openai", "base_url": f"{url}/v1"},
        "anthropic": {"kind": "anthropic", "base_url": url},
        "compat": {"kind": "openai", "base_url": f"{url}/v1"},  # an OpenAI-compatible host serving Claude
        "openrouter": {"kind": "openai", "base_url": f"{url}/api/v1"},
        "deepseek": {"kind": "openai", "base_url": url},
        "azure": {"kind": "openai", "base_url": url},
    }


@pytest.fixture
def replay() -> Iterator[ReplayServer]:
    with ReplayServer() as server:
        yield server


@pytest.fixture
def make_gw(replay: ReplayServer, tmp_path: Path) -> Iterator[Callable[..., GatewayServer]]:
    with Gateways(replay.url, tmp_path, providers=providers(replay.url)) as make:
        yield make


@pytest.fixture
def gw(make_gw: Callable[..., GatewayServer]) -> GatewayServer:
    return make_gw()


# --- helpers -------------------------------------------------------------------------------------------------------


def post(gw: GatewayServer, path: str, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A non-streaming call: (the answer the client got, the record)."""
    r = httpx.post(f"{gw.url}/{path}", json=body, headers={"authorization": "Bearer sk-test"}, trust_env=False)
    assert r.status_code == 200, r.text
    [rec] = gw.records(1)
    assert rec["stream"] is False
    return r.json(), rec


def post_stream(gw: GatewayServer, path: str, body: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """A streaming call read to the end: (the `data:` payloads the client got, JSON-decoded where JSON; the
    record)."""
    with stream_post(f"{gw.url}/{path}", body, {"authorization": "Bearer sk-test"}) as r:
        assert r.status_code == 200, r.read()
        data = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    [rec] = gw.records(1)
    assert rec["stream"] is True
    return [d if d == "[DONE]" else json.loads(d) for d in data], rec


def assert_billed(
    rec: dict[str, Any],
    cost_usd: float,
    tokens: dict[str, int],
    *,
    tool_calls: dict[str, int] | None = None,
    tool_cost_usd: float = 0.0,
    service_tier: str | None = None,
) -> None:
    """The record is an ok call with the provider's usage: every token field as given (unlisted ones 0), the
    tools, the tier, and the cost."""
    assert set(tokens) <= set(TOKEN_FIELDS), set(tokens) - set(TOKEN_FIELDS)
    fields = (*TOKEN_FIELDS, "status", "usage_source", "tool_calls", "tool_cost_usd", "service_tier", "cost_usd")
    got = {k: rec[k] for k in fields}
    want = {
        **{k: tokens.get(k, 0) for k in TOKEN_FIELDS},
        "status": "ok",
        "usage_source": "provider",
        "tool_calls": tool_calls,
        "tool_cost_usd": pytest.approx(tool_cost_usd, rel=1e-9),
        "service_tier": service_tier,
        "cost_usd": pytest.approx(cost_usd, rel=1e-9),
    }
    assert got == want, {k: (got[k], want[k]) for k in fields if got[k] != want[k]}
    assert rec["error_type"] is None and rec["http_status"] == 200


def chat_chunks(
    model: str,
    pieces: list[dict[str, Any]],
    usage: dict[str, Any],
    *,
    service_tier: str | None = "default",
    first: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any] | str]:
    """A chat/completions stream as OpenAI sends it with stream_options.include_usage: one chunk per delta
    (`"usage": null` on each), a finish chunk, then the usage chunk with `choices: []`, then [DONE]."""
    base = {"id": "chatcmpl-CY7Hx2", "object": "chat.completion.chunk", "created": CREATED, "model": model}
    if service_tier is not None:
        base["service_tier"] = service_tier
    base["system_fingerprint"] = "fp_cbf1785567"
    out: list[dict[str, Any] | str] = list(first or [])
    for delta in [{"role": "assistant", "content": "", "refusal": None}, *pieces]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
        out.append({**base, "choices": [choice], "usage": None})
    out.append(
        {**base, "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}], "usage": None}
    )
    out.append({**base, "choices": [], "usage": usage})
    out.append("[DONE]")
    return out


def chat_usage(
    prompt: int,
    completion: int,
    *,
    cached: int = 0,
    audio_in: int = 0,
    audio_out: int = 0,
    text_in: int | None = None,
    text_out: int | None = None,
) -> dict[str, Any]:
    """chat/completions usage as OpenAI reports it, every detail field there (zeros too); the text_tokens split
    only where audio is in play."""
    prompt_details = {"cached_tokens": cached, "audio_tokens": audio_in}
    if text_in is not None:
        prompt_details |= {"text_tokens": text_in, "image_tokens": 0}
    completion_details = {"reasoning_tokens": 0, "audio_tokens": audio_out}
    if text_out is not None:
        completion_details["text_tokens"] = text_out
    completion_details |= {"accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": prompt_details,
        "completion_tokens_details": completion_details,
    }


def chat_answer(
    model: str, usage: dict[str, Any], message: dict[str, Any], *, service_tier: str | None = "default"
) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "id": "chatcmpl-CY7Hx2",
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}],
        "usage": usage,
    }
    if service_tier is not None:
        answer["service_tier"] = service_tier
    answer["system_fingerprint"] = "fp_cbf1785567"
    return answer


def text_message(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": text, "refusal": None, "annotations": []}


def no_usage_chunk_reached(data: list[Any]) -> bool:
    return all(d == "[DONE]" or d.get("usage") is None for d in data)


def responses_stream(final: dict[str, Any], texts: list[str]) -> list[dict[str, Any] | str]:
    """A Responses stream: response.created (no usage yet), text deltas, response.completed with `final`."""
    created = {**final, "status": "in_progress", "output": [], "usage": None}
    events: list[dict[str, Any] | str] = [{"type": "response.created", "sequence_number": 0, "response": created}]
    for i, t in enumerate(texts):
        events.append(
            {
                "type": "response.output_text.delta",
                "sequence_number": i + 1,
                "item_id": "msg_68e1c2",
                "output_index": len(final["output"]) - 1,
                "content_index": 0,
                "delta": t,
                "logprobs": [],
            }
        )
    events.append({"type": "response.completed", "sequence_number": len(texts) + 1, "response": final})
    return events


def response_message(text: str) -> dict[str, Any]:
    return {
        "type": "message",
        "id": "msg_68e1c2",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }


def response_answer(
    id_: str, model: str, output: list[dict[str, Any]], usage: dict[str, Any], **fields: Any
) -> dict[str, Any]:
    """A completed Responses answer (platform.openai.com/docs/api-reference/responses/object); `fields` such as
    service_tier and tools stand between the model and the output."""
    head = {"id": id_, "object": "response", "created_at": CREATED, "status": "completed", "model": model}
    return {**head, **fields, "output": output, "usage": usage}


def responses_usage(
    input_tokens: int, cached: int, output_tokens: int, reasoning: int, cache_write: int | None = None
) -> dict[str, Any]:
    """Responses usage as reported: input and output tokens with their details (cache_write_tokens only where
    the host reports it), and their total."""
    details = (
        {"cached_tokens": cached}
        if cache_write is None
        else {"cached_tokens": cached, "cache_write_tokens": cache_write}
    )
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": details,
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": input_tokens + output_tokens,
    }


def messages_answer(id_: str, content: list[dict[str, Any]], usage: dict[str, Any]) -> dict[str, Any]:
    """A Messages answer from Sonnet 4.5 that ended its turn (docs.anthropic.com Messages response shape)."""
    return {
        "id": id_,
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": content,
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": usage,
    }


def anthropic_stream(message: dict[str, Any], delta_usage: dict[str, Any]) -> list[dict[str, Any] | str]:
    """A Messages stream of `message` (its content blocks one by one, text in two deltas): message_start with
    the start usage, then message_delta with the cumulative `delta_usage`, then message_stop."""
    start = {**message, "content": [], "stop_reason": None, "stop_sequence": None}
    events: list[dict[str, Any] | str] = [{"type": "message_start", "message": start}]
    for i, block in enumerate(message["content"]):
        kind = block["type"]
        if kind == "text":
            half = len(block["text"]) // 2
            events.append({"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}})
            for part in (block["text"][:half], block["text"][half:]):
                delta = {"type": "text_delta", "text": part}
                events.append({"type": "content_block_delta", "index": i, "delta": delta})
        elif kind == "thinking":
            events.append(
                {
                    "type": "content_block_start",
                    "index": i,
                    "content_block": {"type": "thinking", "thinking": "", "signature": ""},
                }
            )
            thinking = {"type": "thinking_delta", "thinking": block["thinking"]}
            events.append({"type": "content_block_delta", "index": i, "delta": thinking})
            signature = {"type": "signature_delta", "signature": block["signature"]}
            events.append({"type": "content_block_delta", "index": i, "delta": signature})
        elif kind == "server_tool_use":
            events.append({"type": "content_block_start", "index": i, "content_block": {**block, "input": {}}})
            partial = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
            events.append({"type": "content_block_delta", "index": i, "delta": partial})
        else:  # web_search_tool_result: whole in its start event
            events.append({"type": "content_block_start", "index": i, "content_block": block})
        events.append({"type": "content_block_stop", "index": i})
    events.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
            "usage": delta_usage,
        }
    )
    events.append({"type": "message_stop"})
    return events


# --- 1. OpenAI chat, service_tier "priority", gpt-4o ----------------------------------------------------------

PRIORITY_USAGE = chat_usage(1200, 300, cached=200)
PRIORITY_BODY = {"model": "gpt-4o", "service_tier": "priority", "messages": MESSAGES}
# openai.com/api/pricing, gpt-4o Priority: $4.25 in, $2.125 cached, $17.00 out per 1M
PRIORITY_COST = (1000 * 4.25 + 200 * 2.125 + 300 * 17.00) / M
PRIORITY_TOKENS = {"input_tokens": 1200, "cached_input_tokens": 200, "output_tokens": 300}


def test_openai_chat_priority(replay: ReplayServer, gw: GatewayServer) -> None:
    message = text_message("The night low was 9.5 °C; the heater ran twice.")
    replay.answer_json(chat_answer("gpt-4o-2024-08-06", PRIORITY_USAGE, message, service_tier="priority"))
    answer, rec = post(gw, "openai/chat/completions", PRIORITY_BODY)
    assert answer["service_tier"] == "priority"
    assert (rec["model"], rec["response_model"]) == ("gpt-4o", "gpt-4o-2024-08-06")
    assert_billed(rec, PRIORITY_COST, PRIORITY_TOKENS, service_tier="priority")


def test_openai_chat_priority_stream(replay: ReplayServer, gw: GatewayServer) -> None:
    pieces = [{"content": "The night low was 9.5 °C;"}, {"content": " the heater ran twice."}]
    replay.answer_sse(chat_chunks("gpt-4o-2024-08-06", pieces, PRIORITY_USAGE, service_tier="priority"))
    data, rec = post_stream(gw, "openai/chat/completions", PRIORITY_BODY)
    # picometer asked for the usage chunk itself; the client, which did not, never sees it
    assert replay.requests[0].json["stream_options"] == {"include_usage": True}
    assert data[-1] == "[DONE]" and no_usage_chunk_reached(data)
    assert all(d["choices"] for d in data[:-1])
    assert_billed(rec, PRIORITY_COST, PRIORITY_TOKENS, service_tier="priority")


def test_openai_sdk_chat_priority(replay: ReplayServer, gw: GatewayServer) -> None:
    message = text_message("The night low was 9.5 °C; the heater ran twice.")
    replay.answer_json(chat_answer("gpt-4o-2024-08-06", PRIORITY_USAGE, message, service_tier="priority"))
    client = oa(f"{gw.url}/openai")
    answer = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, service_tier="priority")
    assert answer.service_tier == "priority" and answer.usage is not None and answer.usage.prompt_tokens == 1200
    [rec] = gw.records(1)
    assert_billed(rec, PRIORITY_COST, PRIORITY_TOKENS, service_tier="priority")


# --- 2. OpenAI Responses, service_tier "flex", gpt-5 ----------------------------------------------------------

FLEX_BODY = {"model": "gpt-5", "service_tier": "flex", "input": "Summarise last night's sensor log."}
FLEX_ANSWER = response_answer(
    "resp_68e1c2a0",
    "gpt-5-2025-08-07",
    [
        {"type": "reasoning", "id": "rs_68e1c2", "summary": []},
        response_message("Humidity peaked at 82% at 04:10; nothing else unusual."),
    ],
    responses_usage(2000, cached=500, output_tokens=800, reasoning=600),
    service_tier="flex",
)
# openai.com/api/pricing, gpt-5 Flex: $0.625 in, $0.0625 cached, $5.00 out per 1M
FLEX_COST = (1500 * 0.625 + 500 * 0.0625 + 800 * 5.00) / M
FLEX_TOKENS = {"input_tokens": 2000, "cached_input_tokens": 500, "output_tokens": 800, "reasoning_tokens": 600}


def test_openai_responses_flex(replay: ReplayServer, gw: GatewayServer) -> None:
    replay.answer_json(FLEX_ANSWER)
    _, rec = post(gw, "openai/responses", FLEX_BODY)
    assert replay.requests[0].path == "/v1/responses"
    assert (rec["endpoint"], rec["response_model"]) == ("responses", "gpt-5-2025-08-07")
    assert_billed(rec, FLEX_COST, FLEX_TOKENS, service_tier="flex")


def test_openai_responses_flex_stream(replay: ReplayServer, gw: GatewayServer) -> None:
    replay.answer_sse(responses_stream(FLEX_ANSWER, ["Humidity peaked at 82%", " at 04:10."]), anthropic_style=True)
    data, rec = post_stream(gw, "openai/responses", FLEX_BODY)
    assert data[-1]["type"] == "response.completed"
    assert_billed(rec, FLEX_COST, FLEX_TOKENS, service_tier="flex")


# --- 3. Audio on chat, gpt-4o-audio-preview -------------------------------------------------------------------

AUDIO_BODY = {
    "model": "gpt-4o-audio-preview",
    "modalities": ["text", "audio"],
    "audio": {"voice": "alloy", "format": "wav"},
    "messages": [
        {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "UklGRiQA", "format": "wav"}}]}
    ],
}
AUDIO_USAGE = chat_usage(1000, 500, audio_in=800, audio_out=400, text_in=200, text_out=100)
# openai.com/api/pricing, gpt-4o-audio-preview: text $2.50 in / $10.00 out, audio $40.00 in / $80.00 out per 1M
AUDIO_COST = (200 * 2.50 + 800 * 40.00 + 100 * 10.00 + 400 * 80.00) / M
AUDIO_TOKENS = {"input_tokens": 1000, "audio_input_tokens": 800, "output_tokens": 500, "audio_output_tokens": 400}
AUDIO_MODEL = "gpt-4o-audio-preview-2025-06-03"


def test_openai_chat_audio(replay: ReplayServer, gw: GatewayServer) -> None:
    audio = {"id": "audio_68e1c2", "data": "UklGRiQAAABXQVZF", "expires_at": CREATED + 3600, "transcript": "Warm."}
    message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None, "audio": audio, "annotations": []}
    replay.answer_json(chat_answer(AUDIO_MODEL, AUDIO_USAGE, message))
    _, rec = post(gw, "openai/chat/completions", AUDIO_BODY)
    assert_billed(rec, AUDIO_COST, AUDIO_TOKENS, service_tier="default")
    metrics = httpx.get(f"{gw.url}/metrics", trust_env=False).text
    for kind, n in (("audio_input", 800), ("audio_output", 400)):
        model = AUDIO_BODY["model"]
        series = f'picometer_tokens_total{{model="{model}",provider="openai",type="{kind}",workflow="untagged"}}'
        assert f"{series} {n}.0" in metrics, kind


def test_openai_chat_audio_stream(replay: ReplayServer, gw: GatewayServer) -> None:
    pieces: list[dict[str, Any]] = [
        {"audio": {"id": "audio_68e1c2", "transcript": "Wa"}},
        {"audio": {"transcript": "rm."}},
        {"audio": {"data": "UklGRiQAAABXQVZF"}},
        {"audio": {"expires_at": CREATED + 3600}},
    ]
    replay.answer_sse(chat_chunks(AUDIO_MODEL, pieces, AUDIO_USAGE))
    data, rec = post_stream(gw, "openai/chat/completions", AUDIO_BODY)
    assert data[-1] == "[DONE]" and no_usage_chunk_reached(data)
    assert_billed(rec, AUDIO_COST, AUDIO_TOKENS, service_tier="default")


# --- 4. Anthropic web search, claude-sonnet-4-5 ----------------------------------------------------------------

SEARCH_TOOL: Any = {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}
SEARCH_BODY = {"model": "claude-sonnet-4-5", "max_tokens": 1024, "messages": MESSAGES, "tools": [SEARCH_TOOL]}


def search_message(usage: dict[str, Any]) -> dict[str, Any]:
    """A Messages answer that searched three times (docs.anthropic.com web-search tool response shape)."""
    content: list[dict[str, Any]] = []
    for n, query in enumerate(["frost forecast tonight", "greenhouse heater sizing", "tomato night temperature"]):
        tool_id = f"srvtoolu_01WYG3ziw53XMcoyKL4XcZm{n}"
        content.append({"type": "server_tool_use", "id": tool_id, "name": "web_search", "input": {"query": query}})
        result = {
            "type": "web_search_result",
            "url": f"https://example.org/{n}",
            "title": query.title(),
            "encrypted_content": "EqgfCioIARgBIiQ3YTAwMjY1Mi1jNjlm",
            "page_age": "November 29, 2026",
        }
        content.append({"type": "web_search_tool_result", "tool_use_id": tool_id, "content": [result]})
    content.append({"type": "text", "text": "Frost is likely after 02:00; keep the heater at 8 °C."})
    return messages_answer("msg_01Aq9w938a90dw8q", content, usage)


SEARCH_USAGE = {
    "input_tokens": 2000,
    "cache_creation_input_tokens": 0,
    "cache_read_input_tokens": 0,
    "output_tokens": 600,
    "server_tool_use": {"web_search_requests": 3},
    "service_tier": "standard",
}
# claude.com/pricing (docs.anthropic.com/en/docs/about-claude/pricing), Sonnet 4.5: $3 in, $15 out per 1M;
# docs.anthropic.com web search tool: $10 per 1,000 searches
SEARCH_TOOL_COST = 3 * 10 / 1000
SEARCH_COST = (2000 * 3 + 600 * 15) / M + SEARCH_TOOL_COST
SEARCH_TOKENS = {"input_tokens": 2000, "output_tokens": 600}


def search_stream() -> list[dict[str, Any] | str]:
    start_usage = {**SEARCH_USAGE, "output_tokens": 1, "server_tool_use": {"web_search_requests": 0}}
    delta_usage = {k: v for k, v in SEARCH_USAGE.items() if k != "service_tier"}  # cumulative, as sent
    return anthropic_stream(search_message(start_usage), delta_usage)


def assert_search_record(rec: dict[str, Any]) -> None:
    assert_billed(
        rec,
        SEARCH_COST,
        SEARCH_TOKENS,
        tool_calls={"web_search": 3},
        tool_cost_usd=SEARCH_TOOL_COST,
        service_tier="standard",
    )


def test_anthropic_web_search(replay: ReplayServer, gw: GatewayServer) -> None:
    replay.answer_json(search_message(SEARCH_USAGE))
    _, rec = post(gw, "anthropic/v1/messages", SEARCH_BODY)
    assert (rec["endpoint"], rec["response_model"]) == ("messages", "claude-sonnet-4-5-20250929")
    assert_search_record(rec)


def test_anthropic_web_search_stream(replay: ReplayServer, gw: GatewayServer) -> None:
    replay.answer_sse(search_stream(), anthropic_style=True)
    data, rec = post_stream(gw, "anthropic/v1/messages", SEARCH_BODY)
    assert data[-1] == {"type": "message_stop"}
    assert_search_record(rec)


@pytest.mark.filterwarnings("ignore:The model 'claude-sonnet-4-5' is deprecated:DeprecationWarning")
def test_anthropic_sdk_stream_web_search(replay: ReplayServer, gw: GatewayServer) -> None:
    replay.answer_sse(search_stream(), anthropic_style=True)
    client = ant(f"{gw.url}/anthropic")
    with client.messages.stream(
        model="claude-sonnet-4-5",
        max_tokens=1024,
        messages=MESSAGES,
        tools=[SEARCH_TOOL],
    ) as stream:
        final = stream.get_final_message()
    assert final.usage.server_tool_use is not None and final.usage.server_tool_use.web_search_requests == 3
    assert final.usage.output_tokens == 600
    [rec] = gw.records(1)
    assert rec["stream"] is True
    assert_search_record(rec)


# --- 5. OpenAI Responses: web_search_call x2 and file_search_call x1, gpt-5 -----------------------------------

TOOLS_BODY = {
    "model": "gpt-5",
    "input": "Which of our notes mention frost, and what is tonight's forecast?",
    "tools": [{"type": "web_search"}, {"type": "file_search", "vector_store_ids": ["vs_1"]}],
}
TOOLS_ANSWER = response_answer(
    "resp_68e1d0f1",
    "gpt-5-2025-08-07",
    [
        {"type": "reasoning", "id": "rs_68e1d0", "summary": []},
        {
            "type": "file_search_call",
            "id": "fs_68e1d1",
            "status": "completed",
            "queries": ["frost"],
            "results": None,
        },
        {
            "type": "web_search_call",
            "id": "ws_68e1d2",
            "status": "completed",
            "action": {"type": "search", "query": "frost forecast tonight"},
        },
        {
            "type": "web_search_call",
            "id": "ws_68e1d3",
            "status": "completed",
            "action": {"type": "open_page", "url": "https://example.org/forecast"},
        },
        response_message("Two notes mention frost; tonight's low is forecast at -1 °C."),
    ],
    responses_usage(3000, cached=1000, output_tokens=500, reasoning=200),
    service_tier="default",
    tools=TOOLS_BODY["tools"],
)
# openai.com/api/pricing, built-in tools: web search $10.00 / 1k calls, file search $2.50 / 1k calls
TOOLS_TOOL_COST = 2 * 10.00 / 1000 + 1 * 2.50 / 1000
# openai.com/api/pricing, gpt-5 Standard: $1.25 in, $0.125 cached, $10.00 out per 1M
TOOLS_COST = (2000 * 1.25 + 1000 * 0.125 + 500 * 10.00) / M + TOOLS_TOOL_COST
TOOLS_TOKENS = {"input_tokens": 3000, "cached_input_tokens": 1000, "output_tokens": 500, "reasoning_tokens": 200}


def assert_tools_record(rec: dict[str, Any]) -> None:
    assert_billed(
        rec,
        TOOLS_COST,
        TOOLS_TOKENS,
        tool_calls={"web_search": 2, "file_search": 1},
        tool_cost_usd=TOOLS_TOOL_COST,
        service_tier="default",
    )


def test_openai_responses_tool_calls(replay: ReplayServer, gw: GatewayServer) -> None:
    replay.answer_json(TOOLS_ANSWER)
    _, rec = post(gw, "openai/responses", TOOLS_BODY)
    assert_tools_record(rec)


def test_openai_responses_tool_calls_stream(replay: ReplayServer, gw: GatewayServer) -> None:
    replay.answer_sse(responses_stream(TOOLS_ANSWER, ["Two notes mention frost;", " -1 °C."]), anthropic_style=True)
    data, rec = post_stream(gw, "openai/responses", TOOLS_BODY)
    assert data[-1]["type"] == "response.completed"
    assert_tools_record(rec)


# --- OpenAI chat on a search model: every call searches, billed per call by context size ------------------------

CHAT_SEARCH_BODY = {
    "model": "gpt-4o-mini-search-preview",
    "web_search_options": {"search_context_size": "high"},
    "messages": MESSAGES,
}
CHAT_SEARCH_USAGE = chat_usage(900, 250)
# openai.com/api/pricing: gpt-4o-mini $0.15 in, $0.60 out per 1M; web search, gpt-4o-mini search, high context,
# $30.00 / 1k calls (the answer says nothing of the search: one per call)
CHAT_SEARCH_TOOL_COST = 30.00 / 1000
CHAT_SEARCH_COST = (900 * 0.15 + 250 * 0.60) / M + CHAT_SEARCH_TOOL_COST
CHAT_SEARCH_TOKENS = {"input_tokens": 900, "output_tokens": 250}
CHAT_SEARCH_MODEL = "gpt-4o-mini-search-preview-2025-03-11"


def cited_message(text: str) -> dict[str, Any]:
    citation = {"url": "https://example.org/frost", "title": "Frost tonight", "start_index": 0, "end_index": len(text)}
    return {**text_message(text), "annotations": [{"type": "url_citation", "url_citation": citation}]}


def test_openai_chat_search_model(replay: ReplayServer, gw: GatewayServer) -> None:
    replay.answer_json(chat_answer(CHAT_SEARCH_MODEL, CHAT_SEARCH_USAGE, cited_message("Frost after 02:00.")))
    _, rec = post(gw, "openai/chat/completions", CHAT_SEARCH_BODY)
    assert rec["response_model"] == CHAT_SEARCH_MODEL
    tools = {"tool_calls": {"web_search": 1}, "tool_cost_usd": CHAT_SEARCH_TOOL_COST}
    assert_billed(rec, CHAT_SEARCH_COST, CHAT_SEARCH_TOKENS, service_tier="default", **tools)


def test_openai_chat_search_model_stream(replay: ReplayServer, gw: GatewayServer) -> None:
    replay.answer_sse(chat_chunks(CHAT_SEARCH_MODEL, [{"content": "Frost after 02:00."}], CHAT_SEARCH_USAGE))
    data, rec = post_stream(gw, "openai/chat/completions", CHAT_SEARCH_BODY)
    assert data[-1] == "[DONE]"
    tools = {"tool_calls": {"web_search": 1}, "tool_cost_usd": CHAT_SEARCH_TOOL_COST}
    assert_billed(rec, CHAT_SEARCH_COST, CHAT_SEARCH_TOKENS, service_tier="default", **tools)


def test_openai_sdk_chat_search_model_at_the_default_context(replay: ReplayServer, gw: GatewayServer) -> None:
    usage = chat_usage(700, 120)
    replay.answer_json(chat_answer("gpt-4o-search-preview-2025-03-11", usage, cited_message("Frost after 02:00.")))
    client = oa(f"{gw.url}/openai/v1")
    answer = client.chat.completions.create(model="gpt-4o-search-preview", messages=MESSAGES, web_search_options={})
    assert answer.choices[0].message.annotations
    [rec] = gw.records(1)
    # openai.com/api/pricing: gpt-4o $2.50 in, $10.00 out per 1M; gpt-4o search, medium context (the default), $35 / 1k
    fee = 35.00 / 1000
    tools = {"tool_calls": {"web_search": 1}, "tool_cost_usd": fee}
    cost = (700 * 2.50 + 120 * 10.00) / M + fee
    assert_billed(rec, cost, {"input_tokens": 700, "output_tokens": 120}, service_tier="default", **tools)


def test_a_search_model_call_is_held_with_its_search_under_a_cap(
    replay: ReplayServer, make_gw: Callable[..., GatewayServer]
) -> None:
    gw = make_gw(budgets={"daily_usd": 0.03})
    body = {**CHAT_SEARCH_BODY, "max_tokens": 50}
    r = httpx.post(f"{gw.url}/openai/chat/completions", json=body, trust_env=False)
    assert r.status_code == 429 and r.json()["error"]["code"] == "budget_exceeded", "$0.030 of search and tokens"
    assert replay.requests == [], "refused before the provider"
    replay.answer_json(chat_answer(CHAT_SEARCH_MODEL, chat_usage(40, 50), cited_message("Frost.")))
    low = {**body, "web_search_options": {"search_context_size": "low"}}
    assert httpx.post(f"{gw.url}/openai/chat/completions", json=low, trust_env=False).status_code == 200
    blocked, ok = gw.records(2)
    assert (blocked["status"], blocked["error_type"]) == ("blocked", "budget_exceeded")
    assert ok["tool_calls"] == {"web_search": 1} and ok["cost_usd"] == pytest.approx(
        25 / 1000 + (40 * 0.15 + 50 * 0.6) / M
    )


# --- 6. Anthropic 1-hour cache writes and thinking, claude-sonnet-4-5 -------------------------------------------

CACHE_BODY = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 2048,
    "thinking": {"type": "enabled", "budget_tokens": 1024},
    "system": [
        {"type": "text", "text": "You watch a greenhouse.", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
        {"type": "text", "text": "Sensor manual follows.", "cache_control": {"type": "ephemeral"}},
    ],
    "messages": MESSAGES,
}
CACHE_USAGE = {
    "input_tokens": 50,
    "cache_creation_input_tokens": 3000,
    "cache_read_input_tokens": 4000,
    "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 2000},
    "output_tokens": 700,
    "output_tokens_details": {"thinking_tokens": 300},
    "service_tier": "standard",
}
# docs.anthropic.com/en/docs/about-claude/pricing, Sonnet 4.5: $3 in, $3.75 5m cache write, $6 1h cache write,
# $0.30 cache read, $15 out per 1M
CACHE_COST = (50 * 3 + 1000 * 3.75 + 2000 * 6 + 4000 * 0.30 + 700 * 15) / M
CACHE_TOKENS = {
    "input_tokens": 50 + 3000 + 4000,
    "cached_input_tokens": 4000,
    "cache_write_tokens": 3000,
    "cache_write_1h_tokens": 2000,
    "output_tokens": 700,
    "reasoning_tokens": 300,
}


def cache_message(usage: dict[str, Any]) -> dict[str, Any]:
    thinking = {
        "type": "thinking",
        "thinking": "The log shows one heater cycle.",
        "signature": "EqQBCgIYAhIM1gbcDa9GJwZA",
    }
    text = {"type": "text", "text": "The heater cycled once, at 03:40."}
    return messages_answer("msg_01XFDUDYJgAACzvnptvVoYEL", [thinking, text], usage)


def test_anthropic_1h_cache_and_thinking(replay: ReplayServer, gw: GatewayServer) -> None:
    replay.answer_json(cache_message(CACHE_USAGE))
    _, rec = post(gw, "anthropic/v1/messages", CACHE_BODY)
    assert_billed(rec, CACHE_COST, CACHE_TOKENS, service_tier="standard")


def test_anthropic_1h_cache_and_thinking_stream(replay: ReplayServer, gw: GatewayServer) -> None:
    start_usage = {k: v for k, v in CACHE_USAGE.items() if k != "output_tokens_details"} | {"output_tokens": 1}
    # message_delta's usage is cumulative: the counts again, without the 5m/1h breakdown
    delta_usage = {k: v for k, v in CACHE_USAGE.items() if k not in ("cache_creation", "service_tier")}
    replay.answer_sse(anthropic_stream(cache_message(start_usage), delta_usage), anthropic_style=True)
    data, rec = post_stream(gw, "anthropic/v1/messages", CACHE_BODY)
    assert data[-1] == {"type": "message_stop"}
    assert_billed(rec, CACHE_COST, CACHE_TOKENS, service_tier="standard")


# --- 7. Responses cache_write_tokens on an OpenAI-compatible host serving claude-sonnet-4-5 ---------------------

COMPAT_BODY = {"model": "claude-sonnet-4-5", "input": "Summarise the sensor manual.", "max_output_tokens": 512}
COMPAT_ANSWER = response_answer(
    "resp_01H8c2",
    "claude-sonnet-4-5",
    [response_message("Calibrate the probes monthly.")],
    responses_usage(5000, cached=1000, output_tokens=100, reasoning=0, cache_write=2000),
)
# docs.anthropic.com/en/docs/about-claude/pricing, Sonnet 4.5: $3 in, $0.30 cache read, $3.75 cache write,
# $15 out per 1M (5000 input = 2000 plain + 1000 read + 2000 written)
COMPAT_COST = (2000 * 3 + 1000 * 0.30 + 2000 * 3.75 + 100 * 15) / M
COMPAT_TOKENS = {"input_tokens": 5000, "cached_input_tokens": 1000, "cache_write_tokens": 2000, "output_tokens": 100}


# The gateway path is /compat/responses: CONTRACT §4 maps /{provider}/{rest} to {base_url}/{rest}, and the base URL
# already ends in /v1 (as the OpenAI SDK's does), so /compat/v1/responses would reach /v1/v1/responses.
def test_compat_responses_cache_writes(replay: ReplayServer, gw: GatewayServer) -> None:
    replay.answer_json(COMPAT_ANSWER)
    _, rec = post(gw, "compat/responses", COMPAT_BODY)
    assert replay.requests[0].path == "/v1/responses"
    assert_billed(rec, COMPAT_COST, COMPAT_TOKENS)


def test_compat_responses_cache_writes_stream(replay: ReplayServer, gw: GatewayServer) -> None:
    replay.answer_sse(responses_stream(COMPAT_ANSWER, ["Calibrate", " the probes monthly."]), anthropic_style=True)
    _, rec = post_stream(gw, "compat/responses", COMPAT_BODY)
    assert_billed(rec, COMPAT_COST, COMPAT_TOKENS)


# --- 8. OpenRouter: its reported cost, with and without BYOK ---------------------------------------------------

OPENROUTER_BODY = {"model": "openai/gpt-4.1", "messages": MESSAGES, "usage": {"include": True}}


def openrouter_usage(cost: float, byok: bool, upstream: Any) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "prompt_tokens": 900,
        "completion_tokens": 100,
        "total_tokens": 1000,
        "cost": cost,
        "is_byok": byok,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "image_tokens": 0},
    }
    if upstream != "absent":
        usage["cost_details"] = {"upstream_inference_cost": upstream}
    return usage


# openrouter.ai/docs/use-cases/usage-accounting: `cost` is what OpenRouter charges the account; with BYOK that is
# only its fee (5% here), and `cost_details.upstream_inference_cost` is what the provider bills on your own key.
OPENROUTER_CASES = [
    pytest.param(openrouter_usage(0.00011, True, 0.0022), 0.00011 + 0.0022, id="byok"),
    pytest.param(openrouter_usage(0.0005, False, "absent"), 0.0005, id="credits-no-details"),
    pytest.param(openrouter_usage(0.0005, False, None), 0.0005, id="credits-upstream-null"),
    # without BYOK an upstream figure, where sent, is what OpenRouter paid and is already in `cost`
    pytest.param(openrouter_usage(0.0005, False, 0.00045), 0.0005, id="credits-upstream-reported"),
]


@pytest.fixture
def openrouter_gw(make_gw: Callable[..., GatewayServer]) -> GatewayServer:
    # The loopback base URL hides that this is OpenRouter, so "openai/gpt-4.1" is not in the price data: let it
    # through (OpenRouter prices the call itself).
    return make_gw(budgets={"unpriced": "allow"})


@pytest.mark.parametrize(("usage", "cost"), OPENROUTER_CASES)
def test_openrouter_reported_cost(
    replay: ReplayServer, openrouter_gw: GatewayServer, usage: dict[str, Any], cost: float
) -> None:
    answer = chat_answer("openai/gpt-4.1", usage, text_message("All sensors report."), service_tier=None)
    replay.answer_json({**answer, "provider": "OpenAI"})
    _, rec = post(openrouter_gw, "openrouter/chat/completions", OPENROUTER_BODY)
    assert replay.requests[0].path == "/api/v1/chat/completions"
    assert rec["price_source"] == "provider"
    assert_billed(rec, cost, {"input_tokens": 900, "output_tokens": 100})


@pytest.mark.parametrize(("usage", "cost"), OPENROUTER_CASES)
def test_openrouter_reported_cost_stream(
    replay: ReplayServer, openrouter_gw: GatewayServer, usage: dict[str, Any], cost: float
) -> None:
    pieces = [{"content": "All sensors"}, {"content": " report."}]
    chunks = chat_chunks("openai/gpt-4.1", pieces, usage, service_tier=None)
    replay.answer_sse([{**c, "provider": "OpenAI"} if isinstance(c, dict) else c for c in chunks])
    data, rec = post_stream(openrouter_gw, "openrouter/chat/completions", OPENROUTER_BODY)
    assert data[-1] == "[DONE]" and no_usage_chunk_reached(data)
    assert rec["price_source"] == "provider"
    assert_billed(rec, cost, {"input_tokens": 900, "output_tokens": 100})


# --- 9. DeepSeek cache hits, deepseek-chat ---------------------------------------------------------------------

DEEPSEEK_BODY = {"model": "deepseek-chat", "messages": MESSAGES}
DEEPSEEK_USAGE = {
    "prompt_tokens": 1000,
    "completion_tokens": 200,
    "total_tokens": 1200,
    "prompt_cache_hit_tokens": 600,
    "prompt_cache_miss_tokens": 400,
}
# api-docs.deepseek.com/quick_start/pricing, deepseek-chat (V3) standard price: $0.27 cache miss, $0.07 cache hit,
# $1.10 out per 1M. The off-peak discount (16:30-00:30 UTC) ended on 2025-09-05, so the hour does not matter.
DEEPSEEK_COST = (400 * 0.27 + 600 * 0.07 + 200 * 1.10) / M
DEEPSEEK_TOKENS = {"input_tokens": 1000, "cached_input_tokens": 600, "output_tokens": 200}
HOURS = [pytest.param(12, id="12h-utc"), pytest.param(20, id="20h-utc")]


def deepseek_gw(make_gw: Callable[..., GatewayServer], hour: int) -> GatewayServer:
    return make_gw(clock=ManualClock(datetime(2026, 11, 23, hour, 0, tzinfo=UTC)))


@pytest.mark.parametrize("hour", HOURS)
def test_deepseek_cache_hits(replay: ReplayServer, make_gw: Callable[..., GatewayServer], hour: int) -> None:
    gw = deepseek_gw(make_gw, hour)
    message = text_message("Nothing unusual.")
    replay.answer_json(chat_answer("deepseek-chat", DEEPSEEK_USAGE, message, service_tier=None))
    _, rec = post(gw, "deepseek/chat/completions", DEEPSEEK_BODY)
    assert replay.requests[0].path == "/chat/completions"
    assert_billed(rec, DEEPSEEK_COST, DEEPSEEK_TOKENS)


@pytest.mark.parametrize("hour", HOURS)
def test_deepseek_cache_hits_stream(replay: ReplayServer, make_gw: Callable[..., GatewayServer], hour: int) -> None:
    gw = deepseek_gw(make_gw, hour)
    pieces = [{"content": "Nothing"}, {"content": " unusual."}]
    replay.answer_sse(chat_chunks("deepseek-chat", pieces, DEEPSEEK_USAGE, service_tier=None))
    data, rec = post_stream(gw, "deepseek/chat/completions", DEEPSEEK_BODY)
    assert data[-1] == "[DONE]" and no_usage_chunk_reached(data)
    assert_billed(rec, DEEPSEEK_COST, DEEPSEEK_TOKENS)


# --- 10. Azure OpenAI classic deployment path, gpt-4o-mini ---------------------------------------------------

AZURE_PATH = "openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21"
AZURE_BODY = {"messages": MESSAGES}  # the deployment names the model
AZURE_USAGE = chat_usage(1000, 200)
FILTERS = {s: {"filtered": False, "severity": "safe"} for s in ("hate", "self_harm", "sexual", "violence")}
# openai.com/api/pricing (Azure OpenAI global standard bills the same), gpt-4o-mini: $0.15 in, $0.60 out per 1M
AZURE_COST = (1000 * 0.15 + 200 * 0.60) / M
AZURE_TOKENS = {"input_tokens": 1000, "output_tokens": 200}


def assert_azure_record(replay: ReplayServer, rec: dict[str, Any]) -> None:
    assert replay.requests[0].path == f"/{AZURE_PATH}"
    assert "model" not in replay.requests[0].json
    assert (rec["endpoint"], rec["model"], rec["response_model"]) == (
        "chat/completions",
        "gpt-4o-mini",
        "gpt-4o-mini-2024-07-18",
    )
    assert_billed(rec, AZURE_COST, AZURE_TOKENS)


def test_azure_deployment_path(replay: ReplayServer, gw: GatewayServer) -> None:
    answer = chat_answer("gpt-4o-mini-2024-07-18", AZURE_USAGE, text_message("All quiet."), service_tier=None)
    answer["choices"][0]["content_filter_results"] = FILTERS
    answer["prompt_filter_results"] = [{"prompt_index": 0, "content_filter_results": FILTERS}]
    replay.answer_json(answer)
    _, rec = post(gw, f"azure/{AZURE_PATH}", AZURE_BODY)
    assert_azure_record(replay, rec)


def test_azure_deployment_path_stream(replay: ReplayServer, gw: GatewayServer) -> None:
    # Azure opens with a chunk of prompt filter results: no choices, and an empty model
    first = {
        "choices": [],
        "created": 0,
        "id": "",
        "model": "",
        "object": "",
        "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": FILTERS}],
    }
    pieces = [{"content": "All"}, {"content": " quiet."}]
    chunks = chat_chunks("gpt-4o-mini-2024-07-18", pieces, AZURE_USAGE, service_tier=None, first=[first])
    replay.answer_sse(chunks)
    data, rec = post_stream(gw, f"azure/{AZURE_PATH}", AZURE_BODY)
    assert data[-1] == "[DONE]" and no_usage_chunk_reached(data)
    assert_azure_record(replay, rec)


# --- 11. batch results fetched through picometer ---------------------------------------------------------------


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def openai_batch_line(i: int, prompt: int, cached: int, completion: int) -> dict[str, Any]:
    return {
        "id": f"batch_req_{i}",
        "custom_id": f"row-{i}",
        "response": {
            "status_code": 200,
            "request_id": f"req_{i}",
            "body": {
                "object": "chat.completion",
                "model": "gpt-4o-mini-2024-07-18",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}],
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "prompt_tokens_details": {"cached_tokens": cached},
                },
            },
        },
        "error": None,
    }


def test_openai_batch_output_is_metered_per_line_at_the_batch_price(replay: ReplayServer, gw: GatewayServer) -> None:
    failed = {"id": "batch_req_x", "custom_id": "row-x", "response": {"status_code": 400, "body": {"error": {}}}}
    lines = [openai_batch_line(0, 1000, 0, 200), openai_batch_line(1, 3000, 1024, 500), failed]
    replay.answer_bytes(jsonl(lines))
    r = httpx.get(f"{gw.url}/openai/files/file-out1/content", headers={"authorization": "Bearer sk-t"}, trust_env=False)
    assert r.status_code == 200 and r.content == jsonl(lines), "the client gets the file unchanged"
    [rec] = gw.records(1)
    # openai.com/api/pricing, gpt-4o-mini Batch API: $0.075 in, $0.30 out per 1M (cached input: not discounted
    # further in the batch price data, $0.075)
    expected = (1000 * 0.075 + 200 * 0.30) / 1e6 + (3000 * 0.075 + 500 * 0.30) / 1e6
    assert rec["batch"] is True and rec["endpoint"] == "files/file-out1/content"
    assert rec["response_model"] == "gpt-4o-mini-2024-07-18"
    assert (rec["input_tokens"], rec["cached_input_tokens"], rec["output_tokens"]) == (4000, 1024, 700)
    assert rec["cost_usd"] == pytest.approx(expected, rel=1e-9) and rec["price_source"] == "batch"
    # Read again: the same results are not counted twice.
    replay.answer_bytes(jsonl(lines))
    httpx.get(f"{gw.url}/openai/files/file-out1/content", headers={"authorization": "Bearer sk-t"}, trust_env=False)
    again = gw.records(2)[1]
    assert again["cost_usd"] == 0 and again["price_source"] == "batch:counted-before" and again["input_tokens"] == 0


def test_a_file_that_holds_no_results_passes_through_uncounted(replay: ReplayServer, gw: GatewayServer) -> None:
    upload = jsonl([{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "x"}}])
    replay.answer_bytes(upload)
    r = httpx.get(f"{gw.url}/openai/files/file-in1/content", trust_env=False)
    assert r.content == upload
    [rec] = gw.records(1)
    assert (rec["batch"], rec["cost_usd"], rec["usage_source"]) == (False, 0.0, "none")


def test_anthropic_batch_results_are_metered_per_line_at_the_batch_price(
    replay: ReplayServer, gw: GatewayServer
) -> None:
    def line(i: int, kind: str, usage: dict[str, Any]) -> dict[str, Any]:
        message = {"id": f"msg_{i}", "type": "message", "model": "claude-sonnet-4-5-20250929", "usage": usage}
        return {
            "custom_id": f"r{i}",
            "result": {"type": kind, "message": message} if kind == "succeeded" else {"type": kind},
        }

    lines = [
        line(0, "succeeded", {"input_tokens": 2000, "output_tokens": 400, "cache_read_input_tokens": 1000}),
        line(1, "errored", {}),
        line(2, "succeeded", {"input_tokens": 500, "output_tokens": 100, "cache_creation_input_tokens": 300}),
    ]
    replay.answer_bytes(jsonl(lines), b"application/binary")
    r = httpx.get(f"{gw.url}/anthropic/v1/messages/batches/msgbatch_1/results", trust_env=False)
    assert r.status_code == 200
    [rec] = gw.records(1)
    # anthropic.com/pricing, Claude Sonnet 4.5 Batch (50% off): $1.50 in, $0.15 cache read, $1.875 5-minute
    # cache write, $7.50 out per 1M
    expected = (2000 * 1.50 + 1000 * 0.15 + 400 * 7.50) / 1e6 + (500 * 1.50 + 300 * 1.875 + 100 * 7.50) / 1e6
    assert rec["batch"] is True and rec["endpoint"] == "messages/batches/msgbatch_1/results"
    assert (rec["input_tokens"], rec["cached_input_tokens"], rec["cache_write_tokens"]) == (3800, 1000, 300)
    assert rec["output_tokens"] == 500 and rec["cost_usd"] == pytest.approx(expected, rel=1e-9)


# --- 12. audio endpoints, through the real openai SDK ------------------------------------------------------------


def sdk(gw: GatewayServer) -> openai.OpenAI:
    return oa(f"{gw.url}/openai")


def test_whisper_transcription_is_charged_the_seconds_the_answer_reports(
    replay: ReplayServer, gw: GatewayServer
) -> None:
    replay.answer_json({"text": "water the tomatoes", "usage": {"type": "duration", "seconds": 95}})
    # 95 s of speech fits in 100 KB at 8 kbit/s (the bound allows no less than 6 kbit/s)
    out = sdk(gw).audio.transcriptions.create(model="whisper-1", file=("note.ogg", b"OggS" + b"\0" * 100_000))
    assert out.text == "water the tomatoes"
    [rec] = gw.records(1)
    # openai.com/api/pricing, whisper-1: $0.006 per minute
    assert (rec["endpoint"], rec["model"], rec["status"]) == ("audio/transcriptions", "whisper-1", "ok")
    assert rec["cost_usd"] == pytest.approx(95 / 60 * 0.006, rel=1e-9)
    assert rec["price_source"] == "openai-pricing:whisper-1"


def test_token_transcription_is_charged_its_tokens(replay: ReplayServer, gw: GatewayServer) -> None:
    usage = {
        "type": "tokens",
        "input_tokens": 1200,
        "input_token_details": {"text_tokens": 0, "audio_tokens": 1200},
        "output_tokens": 80,
        "total_tokens": 1280,
    }
    replay.answer_json({"text": "water the tomatoes", "usage": usage})
    sdk(gw).audio.transcriptions.create(model="gpt-4o-transcribe", file=("note.wav", b"RIFF" + b"\0" * 60_000))
    [rec] = gw.records(1)
    # openai.com/api/pricing, gpt-4o-transcribe: audio input $6.00, text output $10.00 per 1M tokens
    assert rec["cost_usd"] == pytest.approx((1200 * 6.00 + 80 * 10.00) / 1e6, rel=1e-9)
    assert (rec["audio_input_tokens"], rec["output_tokens"], rec["usage_source"]) == (1200, 80, "provider")


def test_streamed_mini_tts_speech_is_charged_the_tokens_its_last_event_reports(
    replay: ReplayServer, gw: GatewayServer
) -> None:
    """Speech asked with stream_format "sse" ends with speech.audio.done and its usage: the tokens billed, priced
    exactly, instead of the bound a plain audio answer is charged (it says nothing)."""
    audio = base64.b64encode(b"\x00\x01" * 600).decode()
    usage = {"input_tokens": 14, "output_tokens": 101, "total_tokens": 115}
    replay.answer_sse(
        [{"type": "speech.audio.delta", "audio": audio}] * 3 + [{"type": "speech.audio.done", "usage": usage}]
    )
    text = "The greenhouse is at 31 degrees."
    with sdk(gw).audio.speech.with_streaming_response.create(
        model="gpt-4o-mini-tts", voice="alloy", input=text, stream_format="sse"
    ) as r:
        body = r.read()
    assert body.count(b"speech.audio.delta") == 3 and b"speech.audio.done" in body
    [rec] = gw.records(1)
    assert (rec["endpoint"], rec["status"], rec["usage_source"]) == ("audio/speech", "ok", "provider")
    assert rec["stream"] is True, "an answer that came as events is recorded as a stream"
    assert (rec["input_tokens"], rec["output_tokens"], rec["audio_output_tokens"]) == (14, 101, 101)
    # openai.com/api/pricing, gpt-4o-mini-tts: text input $0.60, audio output $12.00 per 1M tokens
    assert rec["cost_usd"] == pytest.approx((14 * 0.60 + 101 * 12.00) / 1e6, rel=1e-9)
    assert rec["price_source"] == "openai-pricing:gpt-4o-mini-tts(tokens)"


def test_speech_is_charged_per_character_of_its_input(replay: ReplayServer, gw: GatewayServer) -> None:
    replay.answer_bytes(b"ID3" + b"\0" * 5000, b"audio/mpeg")
    text = "The greenhouse is at 31 degrees and the soil is dry. " * 20  # 1,060 characters
    speech = sdk(gw).audio.speech.create(model="tts-1-hd", voice="alloy", input=text)
    assert speech.content.startswith(b"ID3")
    [rec] = gw.records(1)
    assert rec["stream"] is False
    # openai.com/api/pricing, tts-1-hd: $30.00 per 1M characters
    assert rec["cost_usd"] == pytest.approx(len(text) * 30 / 1e6, rel=1e-9) and len(text) == 1060
