"""The official SDK clients the tests call through, with retries off: a test sees each failure once."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
from openai.types.chat import ChatCompletionChunk


def oa(base: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base, api_key="sk-test", max_retries=0)


def ant(base: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=base, api_key="sk-ant-test", max_retries=0)


def chat_stream_with_usage(base: str, messages: Any, headers: dict[str, str]) -> list[ChatCompletionChunk]:
    """A gpt-4o-mini chat stream that asks for its usage chunk (the last one), read to the end."""
    stream = oa(base).chat.completions.create(
        model="gpt-4o-mini",
        messages=messages,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers=headers,
    )
    return list(stream)
