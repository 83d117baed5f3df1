"""A chat request in the other API's shape, for a substitute model (a downgrade or a fallback) of that API.

What crosses, what is dropped and what is refused (refused = `Untranslatable`, and picometer does not substitute):

OpenAI chat/completions -> Anthropic messages
- system and developer messages before the first turn -> `system`; one after a turn is refused (moving it
  would change its meaning). user/assistant text (a string or text parts), assistant refusal text -> text blocks.
- `image_url` parts: a base64 `data:` URL (JPEG, PNG, GIF, WebP) -> a base64 image source, an http(s) URL -> a
  url source; `detail` is dropped (a price hint). Audio input and `file` parts (documents, PDFs) are refused.
- `tools[].function` {name, description, parameters, strict} -> tools {name, description, input_schema, strict};
  other tool types are refused. `tool_choice` auto/none/required/named -> auto/none/any/tool;
  `parallel_tool_calls: false` -> `disable_parallel_tool_use`.
- assistant `tool_calls` -> `tool_use` blocks (arguments must be a JSON object); `role: tool` -> a user
  `tool_result`; consecutive same-role turns are merged, since Anthropic wants them to alternate.
- `max_completion_tokens` / `max_tokens` -> `max_tokens`, DEFAULT_MAX_TOKENS (4096) when absent.
  `temperature` is clamped to 1 (Anthropic's range is 0-1). `top_p` as it is; current Anthropic models refuse
  both at once, so one at its default (1) is left out and two set ones are refused. `stream` as it is; `stop` ->
  `stop_sequences` (whitespace-only ones are refused: Anthropic rejects them). `user` (or `safety_identifier`)
  -> `metadata.user_id`.
- Dropped (price, speed, storage or logging hints): `service_tier`, `store`, `metadata`, `seed` (best-effort
  determinism only), `prompt_cache_*`, `prediction`, `stream_options`, message `name`.
- Accepted only at their defaults, refused otherwise: `n`, `logprobs`, `top_logprobs`, `presence_penalty`,
  `frequency_penalty`, `logit_bias`, `response_format` (JSON modes are refused: not the same guarantee),
  `modalities` (audio), `verbosity`. Everything else (`audio`, `functions`, `reasoning_effort`,
  `web_search_options`, ...) is refused, named.

Anthropic messages -> OpenAI chat/completions
- `system` -> one system message; text, images (base64 -> `data:` URL, url -> URL), `tool_use` ->
  `tool_calls` (input as a JSON string), `tool_result` -> `role: tool` messages in order (text only; `is_error`
  is dropped, the text stays). Thinking blocks of earlier turns are dropped (Anthropic ignores them too).
- `max_tokens` -> `max_completion_tokens` (what current OpenAI models take; the caller may ask for `max_tokens`,
  what local OpenAI-compatible servers read); `temperature`, `top_p` as they
  are; `stop_sequences` -> `stop` (at most 4); `stream` -> `stream` with `stream_options.include_usage`;
  `metadata.user_id` -> `user`; tools and `tool_choice` auto/any/tool/none -> auto/required/named/none,
  `disable_parallel_tool_use` -> `parallel_tool_calls: false`.
- Dropped: `cache_control` (price only), `service_tier`, `speed`, tools' `eager_input_streaming`.
- Refused: `thinking` (unless disabled), `top_k`, `output_config` (effort, structured output), server tools
  (web search, code execution, ...), documents, search results, citations, Files API images, `container`,
  `mcp_servers`, `inference_geo`, and anything else unknown.
"""

from __future__ import annotations

from typing import Any

from picometer.translate.request_to_anthropic import to_anthropic
from picometer.translate.request_to_openai import MAX_TOKENS_FIELD, to_openai
from picometer.translate.untranslatable import Untranslatable

SHAPES = ("openai", "anthropic")


def check_shapes(from_shape: str, to_shape: str) -> None:
    for shape in (from_shape, to_shape):
        if shape not in SHAPES:
            raise Untranslatable(f"the {shape!r} API", "picometer translates only between openai and anthropic")


def request(
    body: dict[str, Any], from_shape: str, to_shape: str, model: str, *, max_tokens_field: str = MAX_TOKENS_FIELD
) -> dict[str, Any]:
    """The request `body` of API `from_shape` as a request of API `to_shape` for `model`. `max_tokens_field`:
    where an OpenAI-shaped request puts the token limit (local servers such as Ollama read only `max_tokens`)."""
    check_shapes(from_shape, to_shape)
    if from_shape == to_shape:
        if not isinstance(body, dict):
            raise Untranslatable("the request", "it is not a JSON object")
        return {**body, "model": model}
    if to_shape == "anthropic":
        return to_anthropic(body, model)
    return to_openai(body, model, max_tokens_field)
