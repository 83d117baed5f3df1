"""Streamed answers translated between the OpenAI chat and Anthropic messages APIs, read by the real SDKs' own
stream parsers from a loopback server: text, tool calls, finish reason and usage arrive as the client expects."""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest
from anthropic.types import RawMessageStreamEvent
from hypothesis import given
from hypothesis import strategies as st
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletionChunk
from pydantic import TypeAdapter

from picometer.metering.sse import SSEParser
from picometer.translate import StreamTranslator, Untranslatable
from tests.replay import ReplayServer, sse
from tests.sdks import ant, oa
from tests.test_translate import mutated

HI: Any = [{"role": "user", "content": "Weather in Oslo?"}]
ANTHROPIC_EVENT: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)


def claude_stream(blocks: list[dict[str, Any]], stop: str = "tool_use", **usage: int) -> list[dict[str, Any] | str]:
    """A Messages stream as Anthropic sends it: text in word deltas, tool input in JSON pieces, a ping."""
    start_usage = {"input_tokens": 472, "cache_read_input_tokens": 0, "output_tokens": 2, **usage}
    message = {"id": "msg_014p7gG3wDgGV9EUtLvnow3U", "type": "message", "role": "assistant", "content": []}
    message |= {"model": "claude-haiku-4-5-20251001", "stop_reason": None, "stop_sequence": None, "usage": start_usage}
    events: list[dict[str, Any] | str] = [{"type": "message_start", "message": message}]
    for i, block in enumerate(blocks):
        if block["type"] == "text":
            events.append({"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}})
            events.append({"type": "ping"})
            for word in block["pieces"]:
                events.append(
                    {"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": word}}
                )
        elif block["type"] == "thinking":
            start = {"type": "thinking", "thinking": "", "signature": ""}
            events.append({"type": "content_block_start", "index": i, "content_block": start})
            delta = {"type": "thinking_delta", "thinking": "The user wants weather."}
            events.append({"type": "content_block_delta", "index": i, "delta": delta})
            events.append(
                {"type": "content_block_delta", "index": i, "delta": {"type": "signature_delta", "signature": "x"}}
            )
        else:
            start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            events.append({"type": "content_block_start", "index": i, "content_block": start})
            for piece in ["", *block["pieces"]]:
                delta = {"type": "input_json_delta", "partial_json": piece}
                events.append({"type": "content_block_delta", "index": i, "delta": delta})
        events.append({"type": "content_block_stop", "index": i})
    events.append(
        {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None}, "usage": {"output_tokens": 89}}
    )
    events.append({"type": "message_stop"})
    return events


WEATHER_BLOCKS = [
    {"type": "thinking"},
    {"type": "text", "pieces": ["Okay", ", let me check", " the weather."]},
    {
        "type": "tool_use",
        "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
        "name": "get_weather",
        "pieces": ['{"city":', ' "Oslo"}'],
    },
    {"type": "tool_use", "id": "toolu_02", "name": "get_time", "pieces": []},
]


GPT_ID = "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG"


def gpt_stream(
    texts: list[str], calls: list[tuple[str, str, list[str]]], finish: str, usage: dict[str, Any] | None
) -> list[dict[str, Any] | str]:
    """A chat stream as OpenAI sends it: role chunk, content pieces, tool call header then argument pieces, the
    finish chunk, the usage chunk (when asked) and [DONE]."""
    head = {"id": GPT_ID, "object": "chat.completion.chunk", "created": 1741570283}
    head |= {"model": "gpt-4o-mini-2024-07-18", "system_fingerprint": "fp_06737a9306", "usage": None}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**head, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

    events: list[dict[str, Any] | str] = [chunk({"role": "assistant", "content": "", "refusal": None})]
    events += [chunk({"content": t}) for t in texts]
    for n, (id_, name, pieces) in enumerate(calls):
        fn = {"name": name, "arguments": ""}
        events.append(chunk({"tool_calls": [{"index": n, "id": id_, "type": "function", "function": fn}]}))
        events += [chunk({"tool_calls": [{"index": n, "function": {"arguments": p}}]}) for p in pieces]
    events.append(chunk({}, finish))
    if usage is not None:
        events.append({**head, "choices": [], "usage": usage})
    return [*events, "[DONE]"]


GPT_USAGE = {
    "prompt_tokens": 1500,
    "completion_tokens": 60,
    "total_tokens": 1560,
    "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
}


def translated(events: list[dict[str, Any] | str], frm: str, to: str, **kw: Any) -> tuple[bytes, StreamTranslator]:
    """The client-shape bytes for an upstream stream, read the way picometer reads it (SSEParser), in odd splits."""
    translator = StreamTranslator(frm, to, kw.pop("model", "asked-model"), **kw)
    raw = sse(events, anthropic_style=frm == "anthropic")
    parser = SSEParser()
    out = b""
    for i in range(0, len(raw), 37):
        for event in parser.feed(raw[i : i + 37]):
            out += translator.feed(event)
    return out, translator


def datas(body: bytes) -> list[tuple[str, str]]:
    return [(e.event, e.data) for e in SSEParser().feed(body, final=True)]


@pytest.fixture
def replay() -> Iterator[ReplayServer]:
    with ReplayServer() as server:
        yield server


# --- Anthropic stream -> OpenAI client ---------------------------------------------------------------------------


def test_an_anthropic_stream_is_read_by_the_openai_sdk(replay: ReplayServer) -> None:
    body, translator = translated(
        claude_stream(WEATHER_BLOCKS, cache_read_input_tokens=2000),
        "anthropic",
        "openai",
        model="gpt-4o",
        include_usage=True,
        created=1764504000,
    )
    assert translator.finished
    replay.answer_bytes(body, b"text/event-stream")
    stream = oa(replay.url).chat.completions.create(
        model="gpt-4o", messages=HI, stream=True, stream_options={"include_usage": True}
    )
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    chunks = list(stream)
    for chunk in chunks:
        state.handle_chunk(chunk)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert {(c.model, c.created, c.id) for c in chunks} == {("gpt-4o", 1764504000, "msg_014p7gG3wDgGV9EUtLvnow3U")}
    final = state.get_final_completion()
    choice = final.choices[0]
    assert choice.message.content == "Okay, let me check the weather."
    assert choice.finish_reason == "tool_calls"
    calls = [(c.id, c.function.name, json.loads(c.function.arguments)) for c in choice.message.tool_calls or []]
    assert calls == [("toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather", {"city": "Oslo"}), ("toolu_02", "get_time", {})]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    usage = chunks[-1].usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (2472, 89, 2561)
    assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens == 2000


def test_the_usage_chunk_comes_only_when_the_client_asked_for_it() -> None:
    body, _ = translated(claude_stream(WEATHER_BLOCKS[1:2], stop="end_turn"), "anthropic", "openai")
    events = datas(body)
    assert events[-1] == ("", "[DONE]")
    chunks = [ChatCompletionChunk.model_validate_json(d) for _, d in events[:-1]]
    assert all(len(c.choices) == 1 and c.usage is None for c in chunks)
    assert [c.choices[0].finish_reason for c in chunks][-2:] == [None, "stop"]


def test_an_anthropic_error_event_is_raised_by_the_openai_sdk(replay: ReplayServer) -> None:
    events = claude_stream(WEATHER_BLOCKS[1:2])[:4]
    events.append({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    body, translator = translated(events, "anthropic", "openai")
    assert translator.finished
    replay.answer_bytes(body, b"text/event-stream")
    seen = []
    with pytest.raises(openai.APIError, match="Overloaded"):
        for chunk in oa(replay.url).chat.completions.create(model="gpt-4o", messages=HI, stream=True):
            seen.append(chunk.choices[0].delta.content)
    assert "Okay" in seen


def test_a_block_that_cannot_cross_mid_stream_ends_it_with_an_error_the_sdk_raises(replay: ReplayServer) -> None:
    translator = StreamTranslator("anthropic", "openai", "gpt-4o")
    parser = SSEParser()
    upstream = claude_stream(WEATHER_BLOCKS[1:2])[:3]
    upstream.append({"type": "content_block_start", "index": 1, "content_block": {"type": "server_tool_use"}})
    body = b""
    with pytest.raises(Untranslatable, match="'server_tool_use'") as refused:
        for event in parser.feed(sse(upstream, anthropic_style=True)):
            body += translator.feed(event)
    body += translator.failure(str(refused.value))
    assert translator.finished
    replay.answer_bytes(body, b"text/event-stream")
    with pytest.raises(openai.APIError, match="server_tool_use"):
        list(oa(replay.url).chat.completions.create(model="gpt-4o", messages=HI, stream=True))


# --- OpenAI stream -> Anthropic client ---------------------------------------------------------------------------


def test_an_openai_stream_is_read_by_the_anthropic_sdk(replay: ReplayServer) -> None:
    calls = [("call_a", "get_weather", ['{"ci', 'ty": "Oslo"}']), ("call_b", "get_time", [])]
    upstream = gpt_stream(["Checking", " both."], calls, "tool_calls", GPT_USAGE)
    body, translator = translated(upstream, "openai", "anthropic", model="claude-haiku-4-5")
    assert translator.finished
    for name, data in datas(body):
        assert ANTHROPIC_EVENT.validate_json(data).type == name
    replay.answer_bytes(body, b"text/event-stream")
    with ant(replay.url).messages.stream(model="claude-haiku-4-5", max_tokens=100, messages=HI) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Checking both."
    assert (final.model, final.stop_reason, final.id) == ("claude-haiku-4-5", "tool_use", GPT_ID)
    assert [(b.id, b.name, b.input) for b in final.content if b.type == "tool_use"] == [
        ("call_a", "get_weather", {"city": "Oslo"}),
        ("call_b", "get_time", {}),
    ]
    usage = final.usage
    assert (usage.input_tokens, usage.cache_read_input_tokens, usage.output_tokens) == (476, 1024, 60)


@pytest.mark.parametrize(("finish", "stop"), [("stop", "end_turn"), ("length", "max_tokens")])
def test_openai_finish_reasons_arrive_as_stop_reasons(replay: ReplayServer, finish: str, stop: str) -> None:
    body, _ = translated(gpt_stream(["Hello"], [], finish, None), "openai", "anthropic")
    replay.answer_bytes(body, b"text/event-stream")
    message = ant(replay.url).messages.create(model="c", max_tokens=5, messages=HI, stream=True)
    events = list(message)
    assert [e.type for e in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[4].type == "message_delta" and events[4].delta.stop_reason == stop


def test_an_openai_error_chunk_is_raised_by_the_anthropic_sdk(replay: ReplayServer) -> None:
    upstream = gpt_stream(["Hel"], [], "stop", None)[:2]
    upstream.append(
        {"error": {"message": "The server had an error while processing your request.", "type": "server_error"}}
    )
    body, translator = translated(upstream, "openai", "anthropic")
    assert translator.finished
    assert datas(body)[-1][0] == "error"
    replay.answer_bytes(body, b"text/event-stream")
    with pytest.raises(anthropic.APIStatusError, match="The server had an error"):
        list(ant(replay.url).messages.create(model="c", max_tokens=5, messages=HI, stream=True))


def test_a_stream_without_its_terminal_event_is_not_finished_and_nothing_follows_the_end() -> None:
    cut, translator = translated(gpt_stream(["Hi"], [], "stop", None)[:-1], "openai", "anthropic")
    assert not translator.finished
    assert b"message_stop" not in cut
    _, whole = translated(claude_stream(WEATHER_BLOCKS[1:2]), "anthropic", "openai")
    assert whole.finished
    assert whole.feed(SSEParser().feed(b'event: ping\ndata: {"type": "ping"}\n\n')[0]) == b""


def test_memory_stays_bounded_over_a_long_stream() -> None:
    """Only indexes are kept: state after ten thousand deltas is the size it was after ten."""
    for frm, to, events in (
        ("anthropic", "openai", claude_stream([{"type": "text", "pieces": ["word "] * 10_000}])[:-2]),
        ("openai", "anthropic", gpt_stream(["word "] * 10_000, [], "stop", None)[:-2]),
    ):
        translator = StreamTranslator(frm, to, "m")
        sizes = []
        for n, event in enumerate(SSEParser().feed(sse(events, anthropic_style=frm == "anthropic"))):
            translator.feed(event)
            if n in (20, len(events) - 1):
                sizes.append(len(repr(vars(translator._inner))))
        assert sizes[0] == sizes[1]


# --- properties ----------------------------------------------------------------------------------------------------

pieces = st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=5)
inputs = st.dictionaries(st.text(max_size=4), st.integers() | st.text(max_size=4), max_size=3)


def split(text: str, cuts: list[int]) -> list[str]:
    points = sorted({0, len(text), *(c % (len(text) + 1) for c in cuts)})
    return [text[a:b] for a, b in itertools.pairwise(points) if text[a:b]]


tool_blocks = st.builds(
    lambda n, i, c: {"type": "tool_use", "id": f"toolu_{n}", "name": f"tool_{n}", "input": i, "cuts": c},
    st.integers(0, 99),
    inputs,
    st.lists(st.integers(0, 50), max_size=4),
)
answers = st.lists(st.builds(lambda p: {"type": "text", "pieces": p}, pieces) | tool_blocks, max_size=5)


def with_pieces(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [b if b["type"] == "text" else {**b, "pieces": split(json.dumps(b["input"]), b["cuts"])} for b in blocks]


@given(answers)
def test_any_anthropic_stream_assembles_in_the_openai_sdk_to_what_was_said(blocks: list[dict[str, Any]]) -> None:
    body, translator = translated(claude_stream(with_pieces(blocks)), "anthropic", "openai", include_usage=True)
    assert translator.finished
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    for _, data in datas(body)[:-1]:
        state.handle_chunk(ChatCompletionChunk.model_validate_json(data))
    message = state.get_final_completion().choices[0].message
    assert (message.content or "") == "".join("".join(b["pieces"]) for b in blocks if b["type"] == "text")
    calls = [(c.id, json.loads(c.function.arguments)) for c in message.tool_calls or []]
    assert calls == [(b["id"], b["input"]) for b in blocks if b["type"] == "tool_use"]


@given(st.lists(st.text(min_size=1, max_size=8), max_size=6), st.lists(tool_blocks, max_size=3))
def test_any_openai_stream_is_valid_anthropic_events_carrying_what_was_said(
    texts: list[str], tools: list[dict[str, Any]]
) -> None:
    calls = [(b["id"], b["name"], split(json.dumps(b["input"]), b["cuts"])) for b in tools]
    body, translator = translated(gpt_stream(texts, calls, "tool_calls", GPT_USAGE), "openai", "anthropic")
    assert translator.finished
    said, inputs_json = "", {}
    for name, data in datas(body):
        event = ANTHROPIC_EVENT.validate_json(data)
        assert event.type == name
        if event.type == "content_block_delta" and event.delta.type == "text_delta":
            said += event.delta.text
        if event.type == "content_block_delta" and event.delta.type == "input_json_delta":
            inputs_json[event.index] = inputs_json.get(event.index, "") + event.delta.partial_json
    assert said == "".join(texts)
    assert [json.loads(v) for v in inputs_json.values()] == [b["input"] for b in tools]


junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["type", "index", "delta", "text",
        "content_block", "message", "usage", "choices", "tool_calls", "function", "arguments", "error", "id",
        "partial_json", "content", "finish_reason", "name"]) | st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)  # fmt: skip
event_types = st.sampled_from(["message_start", "content_block_start", "content_block_delta", "content_block_stop",
    "message_delta", "message_stop", "error", "ping", ""])  # fmt: skip


@given(st.lists(st.tuples(event_types, junk.map(json.dumps) | st.text(max_size=10)), max_size=8))
def test_any_event_sequence_raises_only_untranslatable(events: list[tuple[str, str]]) -> None:
    for frm, to in (("anthropic", "openai"), ("openai", "anthropic")):
        translator = StreamTranslator(frm, to, "m", include_usage=True)
        for name, data in events:
            wire = (f"event: {name}\n" if name else "") + "".join(f"data: {line}\n" for line in data.split("\n"))
            for event in SSEParser().feed(wire.encode() + b"\n", final=True):
                with contextlib.suppress(Untranslatable):
                    translator.feed(event)


REAL_STREAMS = (
    ("anthropic", "openai", claude_stream(WEATHER_BLOCKS)),
    ("openai", "anthropic", gpt_stream(["Hi", "!"], [("call_a", "f", ['{"a":', "1}"])], "tool_calls", GPT_USAGE)),
)


@given(st.data())
def test_a_real_stream_with_any_event_altered_raises_only_untranslatable(data: st.DataObject) -> None:
    for frm, to, events in REAL_STREAMS:
        i = data.draw(st.integers(0, len(events) - 1))
        original = events[i]
        altered = data.draw(mutated(original) if isinstance(original, dict) else junk)
        translator = StreamTranslator(frm, to, "m", include_usage=True)
        for n, event in enumerate(events):
            sent = altered if n == i else event
            name = original["type"] if frm == "anthropic" and isinstance(original, dict) else ""
            wire = (
                f"event: {name}\n" if name else ""
            ) + f"data: {sent if isinstance(sent, str) else json.dumps(sent)}\n\n"
            for parsed in SSEParser().feed(wire.encode()):
                with contextlib.suppress(Untranslatable):
                    translator.feed(parsed)
