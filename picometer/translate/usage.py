"""Token counts in each API's words: OpenAI's prompt_tokens include cached ones, Anthropic's input_tokens do not."""

from __future__ import annotations

from typing import Any

from picometer.translate.untranslatable import tokens


def openai_usage(anthropic: Any) -> dict[str, Any]:
    u = anthropic if isinstance(anthropic, dict) else {}
    read = tokens(u.get("cache_read_input_tokens"))
    write = tokens(u.get("cache_creation_input_tokens"))
    prompt = tokens(u.get("input_tokens")) + read + write
    output = tokens(u.get("output_tokens"))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": output,
        "total_tokens": prompt + output,
        "prompt_tokens_details": {"cached_tokens": read, "cache_write_tokens": write},
    }


def anthropic_usage(openai: Any) -> dict[str, Any]:
    u = openai if isinstance(openai, dict) else {}
    details = u.get("prompt_tokens_details")
    details = details if isinstance(details, dict) else {}
    prompt = tokens(u.get("prompt_tokens"))
    read = min(tokens(details.get("cached_tokens")), prompt)
    write = min(tokens(details.get("cache_write_tokens")), prompt - read)
    return {
        "input_tokens": prompt - read - write,
        "cache_read_input_tokens": read,
        "cache_creation_input_tokens": write,
        "output_tokens": tokens(u.get("completion_tokens")),
    }
