"""The stream relay's shortcut: chunks of plain text deltas are skimmed, not parsed. Whatever the chunking,
a skimmed stream meters exactly as one parsed event by event."""

from __future__ import annotations

import asyncio
import json

from hypothesis import given
from hypothesis import strategies as st

from picometer.asgi import Message
from picometer.gateway.settle import Outcome
from picometer.gateway.streamed import StreamRelay
from picometer.metering.sse import SSEParser
from picometer.metering.stream_meter import StreamMeter
from picometer.record import Record
from tests.relayed import answer

texts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)


def sse(data: object, event: str | None = None, compact: bool = False, split: int = 0, extra: str = "") -> bytes:
    """One event; `split`: its data cut over two data: lines at that offset; `extra`: a line before the data
    (a comment, an id)."""
    text = json.dumps(data, separators=(",", ":") if compact else None, ensure_ascii=False)
    lines = [f"data: {text[:split]}", f"data: {text[split:]}"] if 0 < split < len(text) else [f"data: {text}"]
    head = (f"event: {event}\n" if event else "") + (f"{extra}\n" if extra else "")
    return (head + "\n".join(lines) + "\n\n").encode()


splits = st.one_of(st.just(0), st.just(0), st.integers(1, 60))
extras = st.sampled_from(["", "", "", ": keep-alive", "id: 7"])


@st.composite
def openai_chat(draw: st.DrawFn) -> list[bytes]:
    compact = draw(st.booleans())
    first = {"model": "gpt-4o-mini", "choices": [{"delta": {"role": "assistant", "content": ""}}], "usage": None}
    events = [sse(first, compact=compact)]
    for text in draw(st.lists(texts, max_size=8)):
        chunk = {"model": "gpt-4o-mini", "choices": [{"delta": {"content": text}}], "usage": None}
        events.append(sse(chunk, compact=compact, split=draw(splits), extra=draw(extras)))
    if draw(st.booleans()):
        events.append(sse({"error": {"type": "overloaded_error", "message": "busy"}}))
    if draw(st.booleans()):
        usage = {"prompt_tokens": 7, "completion_tokens": draw(st.integers(0, 99)), "total_tokens": 9}
        usage_chunk = {"model": "gpt-4o-mini", "choices": [], "usage": usage}
        events.append(sse(usage_chunk, compact=compact, split=draw(splits)))
    if draw(st.booleans()):
        events.append(b"data: [DONE]\n\n")
    return events


@st.composite
def anthropic(draw: st.DrawFn) -> list[bytes]:
    message = {"model": "claude-sonnet-4-5", "usage": {"input_tokens": 5, "output_tokens": 1}}
    events = [sse({"type": "message_start", "message": message}, "message_start")]
    for text in draw(st.lists(texts, max_size=8)):
        delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}
        named = draw(st.sampled_from(["content_block_delta", "content_block_delta", None, "ping"]))
        events.append(sse(delta, named, split=draw(splits), extra=draw(extras)))
    usage = {"type": "message_delta", "usage": {"output_tokens": draw(st.integers(0, 99))}}
    # Usage under a delta's name, over two data lines: still read.
    events.append(sse(usage, draw(st.sampled_from(["message_delta", "content_block_delta"])), split=draw(splits)))
    if draw(st.booleans()):
        events.append(sse({"type": "message_stop"}, draw(st.sampled_from(["message_stop", None]))))
    return events


@st.composite
def responses(draw: st.DrawFn) -> list[bytes]:
    events = [sse({"type": "response.created", "response": {"model": "gpt-4.1"}}, "response.created")]
    for text in draw(st.lists(texts, max_size=8)):
        kind = draw(st.sampled_from(["response.output_text.delta", "response.reasoning_text.delta"]))
        events.append(sse({"type": kind, "delta": text}, kind, split=draw(splits), extra=draw(extras)))
    if draw(st.booleans()):
        done = {"model": "gpt-4.1", "usage": {"input_tokens": 3, "output_tokens": 4}, "output": []}
        events.append(sse({"type": "response.completed", "response": done}, "response.completed"))
    return events


def grouped(events: list[bytes], cuts: list[int]) -> list[bytes]:
    """The events in chunks of whole events, as a provider's writes may group them."""
    chunks, start = [], 0
    for cut in sorted({c % (len(events) + 1) for c in cuts} | {len(events)}):
        if cut > start:
            chunks.append(b"".join(events[start:cut]))
            start = cut
    return chunks


def metered(shape: str, endpoint: str, chunks: list[bytes], skim: bool) -> tuple[object, ...]:
    meter, parser = StreamMeter(shape, endpoint), SSEParser()
    for chunk in chunks:
        if skim and parser.idle and meter.skim(chunk):
            continue
        for event in parser.feed(chunk):
            meter.observe(event)
    for event in parser.close():
        meter.observe(event)
    return meter.usage, meter.model, meter.terminal, meter.error, meter.text_chars


CUTS = st.lists(st.integers(0, 20), max_size=10)


@given(openai_chat(), CUTS)
def test_openai_chat_skimmed_meters_as_parsed(events: list[bytes], cuts: list[int]) -> None:
    chunks = grouped(events, cuts)
    assert metered("openai", "chat/completions", chunks, True) == metered("openai", "chat/completions", chunks, False)


@given(anthropic(), CUTS)
def test_anthropic_skimmed_meters_as_parsed(events: list[bytes], cuts: list[int]) -> None:
    chunks = grouped(events, cuts)
    assert metered("anthropic", "messages", chunks, True) == metered("anthropic", "messages", chunks, False)


@given(responses(), CUTS)
def test_responses_skimmed_meters_as_parsed(events: list[bytes], cuts: list[int]) -> None:
    chunks = grouped(events, cuts)
    assert metered("openai", "responses", chunks, True) == metered("openai", "responses", chunks, False)


def test_plain_text_chunks_are_skimmed_and_the_rest_parsed() -> None:
    first = sse({"model": "m", "choices": [{"delta": {"content": "a"}}]})
    text = sse({"model": "m", "choices": [{"delta": {"content": 'héllo "quoted"'}}], "usage": None})
    usage = sse({"model": "m", "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2}})
    meter = StreamMeter("openai", "chat/completions")
    assert not meter.skim(first), "the model is not known before the first chunk is parsed"
    for event in SSEParser().feed(first):
        meter.observe(event)
    assert meter.skim(text) and meter.skim(text + text)
    as_sent = json.dumps('héllo "quoted"', ensure_ascii=False)[1:-1]  # text is counted as it is sent, escaped
    assert meter.text_chars == 1 + 3 * len(as_sent)
    assert not meter.skim(usage) and not meter.skim(text + usage) and not meter.skim(b"data: [DONE]\n\n")
    assert not meter.skim(text[:-1]), "an event without its blank line waits for the parser"
    assert not meter.skim(text.replace(b"\n", b"\r\n"))
    over_lines = b'data: {"choices":[],"usage":\ndata: {"prompt_tokens":3,"completion_tokens":4}}\n\n'
    assert not meter.skim(over_lines), "data over several lines is the parser's to join"


def test_anthropic_text_deltas_are_skimmed_and_the_terminal_event_never() -> None:
    meter = StreamMeter("anthropic", "messages")
    delta = sse({"type": "content_block_delta", "delta": {"type": "text_delta", "text": "hi"}}, "content_block_delta")
    stop = sse({"type": "message_stop"}, "message_stop")
    assert meter.skim(delta + delta) and meter.text_chars == 4
    assert not meter.skim(delta + stop) and not meter.skim(stop)
    twice = b"event: content_block_delta\nevent: content_block_delta\ndata: {}\n\n"
    assert not meter.skim(twice + b'event: message_stop\ndata: {"type":"message_stop"}\n\n')


def test_text_deltas_framed_like_the_first_are_counted_as_the_parser_counts_them() -> None:
    """Skimming learns the frame of the first plain delta, and the relay takes a chunk framed the same with other
    text on its frame alone; text with a quote or an escape, two events at once or another frame still go
    through the full skim, and every way counts what the parser counts."""

    def chunk(text: str) -> bytes:
        return sse({"id": "c1", "model": "m", "choices": [{"index": 0, "delta": {"content": text}}]})

    first = sse({"id": "c1", "model": "m", "choices": [{"index": 0, "delta": {"role": "assistant"}}]})
    stream = [first, chunk("Hello"), chunk(" wörld 🌍"), chunk('a "quote"'), chunk("tab\there")]
    stream += [chunk("x") + chunk("y")]
    stream += [sse({"id": "c1", "model": "m", "choices": [{"index": 1, "delta": {"content": "other"}}]})]
    skimmed = StreamMeter("openai", "chat/completions")
    for event in SSEParser().feed(first):
        skimmed.observe(event)
    assert all(skimmed.skim(c) for c in stream[1:])
    assert skimmed.frame == (chunk("Hello").split(b"Hello")[0], chunk("Hello").split(b"Hello")[1])
    assert skimmed.text_chars == metered("openai", "chat/completions", stream, False)[4]
    metering, body = relayed("openai", "chat/completions", stream)
    assert metering[4] == skimmed.text_chars and body == b"".join(stream)
    assert not skimmed.skim(chunk("z")[:-1]) and not skimmed.skim(chunk("z").replace(b"\n", b"\r\n"))


def relayed(shape: str, endpoint: str, chunks: list[bytes]) -> tuple[object, ...]:
    """What the stream relay meters from these chunks, and what reached the client."""
    sent: list[bytes] = []

    async def send(message: Message) -> None:
        sent.append(message.get("body", b""))

    o = Outcome()
    relay = StreamRelay(o, send, "r", lambda write=True: Record(ts="t", request_id="r"), lambda: 1.0)
    asyncio.run(relay.stream(answer("text/event-stream", chunks), shape, endpoint, False, True, 10**7))
    return (o.usage, o.response_model, o.terminal, o.stream_error, o.text_chars), b"".join(sent)


@given(openai_chat(), CUTS, st.booleans())
def test_the_relay_meters_a_stream_as_the_parser_does(events: list[bytes], cuts: list[int], alone: bool) -> None:
    """Through the relay, whose loop checks chunks framed like the first text delta itself: the same usage,
    model, terminal event, error and text as parsing every event, and every byte passed on."""
    chunks = events if alone else grouped(events, cuts)
    metering, body = relayed("openai", "chat/completions", chunks)
    assert metering == metered("openai", "chat/completions", chunks, False)
    assert body == b"".join(chunks)
