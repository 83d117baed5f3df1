"""An answer too big to hold is read from its head and tail on the way: the same usage, model and tool
counts as the whole answer gives, however it is cut into pieces."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from picometer.metering.answer import AnswerScan
from picometer.metering.usage import from_response

CHAT = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": "gpt-4o-mini-2024-07-18",
    "service_tier": "priority",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "usage: {not this one} " * 20_000}}],
    "usage": {"prompt_tokens": 1200, "completion_tokens": 300, "prompt_tokens_details": {"cached_tokens": 200}},
}
RESPONSE = {
    "object": "response",
    "model": "gpt-5",
    "output": [{"type": "web_search_call", "id": f"ws_{i}", "status": "completed"} for i in range(3)]
    + [{"type": "file_search_call", "id": "fs_1"}]
    + [{"type": "message", "content": [{"type": "output_text", "text": "x" * 400_000}]}],
    "usage": {"input_tokens": 5000, "output_tokens": 800, "output_tokens_details": {"reasoning_tokens": 100}},
}
MESSAGE = {
    "id": "msg_1",
    "type": "message",
    "model": "claude-sonnet-4-5",
    "content": [{"type": "text", "text": '"usage": {"input_tokens": 999999}' * 10_000}],
    "usage": {"input_tokens": 50, "cache_read_input_tokens": 4000, "output_tokens": 700},
}
# Gemini's image models answer with megabytes of base64; Ollama's embed with thousands of vectors.
GEMINI_IMAGE = {
    "candidates": [{"content": {"parts": [{"inlineData": {"mimeType": "image/png", "data": "iVBOR" * 300_000}}]}}],
    "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 1290, "thoughtsTokenCount": 40},
    "modelVersion": "gemini-2.5-flash-image",
}
OLLAMA_EMBED = {
    "model": "nomic-embed-text",
    "embeddings": [[0.0123456789] * 768 for _ in range(150)],
    "total_duration": 14143917,
    "prompt_eval_count": 3000,
}


def scanned(answer: dict[str, Any], cuts: list[int], shape: str) -> AnswerScan:
    data = json.dumps(answer).encode()
    scan = AnswerScan()
    last = 0
    for cut in [*sorted(c % (len(data) + 1) for c in cuts), len(data)]:
        scan.feed(data[last:cut])
        last = max(last, cut)
    return scan


@given(cuts=st.lists(st.integers(0, 10**7), max_size=40))
def test_any_cutting_reads_what_the_whole_answer_says(cuts: list[int]) -> None:
    answers = ((CHAT, "openai"), (RESPONSE, "openai"), (MESSAGE, "anthropic"), (GEMINI_IMAGE, "gemini"))
    for answer, shape in (*answers, (OLLAMA_EMBED, "ollama")):
        usage, model, _ = scanned(answer, cuts, shape).usage(shape)
        whole, whole_model = from_response(shape, answer)
        assert (usage, model) == (whole, whole_model), shape


def test_tool_items_in_the_middle_are_counted() -> None:
    usage, _, _ = scanned(RESPONSE, [10, 100, 1000], "openai").usage("openai")
    assert usage is not None and dict(usage.tool_calls) == {"web_search": 3, "file_search": 1}


def test_an_answer_without_usage_in_its_tail_has_none_so_it_is_estimated() -> None:
    cut_off = {"model": "gpt-4o", "choices": [], "pad": "x" * 100}
    usage, model, answer = scanned(cut_off, [], "openai").usage("openai")
    assert (usage, model, answer) == (None, "gpt-4o", None)
