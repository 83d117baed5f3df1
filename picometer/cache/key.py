"""Which requests the response cache may answer, and the key their answers are stored under. Pure.

A request is cacheable when the same body always asks for the same answer: no sampling (temperature 0, or
an OpenAI `seed`), no tool the provider runs itself (its results change with time or have side effects;
function tools are fine, the model only proposes calls), no server-side state read or written
(`previous_response_id`, `conversation`, `store: true`, background jobs, containers), no audio output.
Embeddings are deterministic: always cacheable.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from picometer.config import CacheConfig
from picometer.metering.endpoints import ANTHROPIC, OPENAI, Endpoint

KEY_VERSION = 1  # part of every key: a change to what the key covers starts a fresh cache

CACHED_ENDPOINTS = frozenset(
    {
        (OPENAI, "chat/completions"),
        (OPENAI, "completions"),
        (OPENAI, "responses"),
        (OPENAI, "embeddings"),
        (ANTHROPIC, "messages"),
    }
)
# Tools the client carries out (the model only proposes a call). Any other type runs at the provider: web
# and file search, code execution, computer use, MCP, image generation, and types not known yet.
_CLIENT_TOOLS = {OPENAI: frozenset({"function", "custom"}), ANTHROPIC: frozenset({None, "custom"})}
# Fields that cannot change the answer (end-user ids for abuse monitoring, labels, routing hints), left out
# of the key. Only where the answer does not echo them: the Responses API echoes nearly every field.
_NEUTRAL_FIELDS = {
    "chat/completions": frozenset({"user", "metadata", "safety_identifier", "prompt_cache_key"}),
    "completions": frozenset({"user"}),
    "embeddings": frozenset({"user"}),
    "messages": frozenset({"metadata"}),
}
# Request headers that change the answer: API version and beta features.
ANSWER_HEADERS = ("anthropic-version", "anthropic-beta", "openai-beta")
# Query parameters that are credentials, never part of a key (Gemini's ?key=).
_SECRET_PARAMS = frozenset({"key", "api_key", "api-key"})
_DIGEST = re.compile(r"[0-9a-f]{64}")


def cacheable(body: Any, shape: str | None, endpoint: str) -> str | None:
    """None when an answer to this request may be stored and replayed; else why not, for the log."""
    if (shape, endpoint) not in CACHED_ENDPOINTS:
        return f"{endpoint} answers are not cached"
    if not isinstance(body, dict):
        return "the body is not a JSON object"
    if endpoint == "embeddings":
        return None
    return _server_state(body, shape) or _server_tools(body, shape) or _audio(body) or _sampled(body, shape)


def _server_state(body: dict[str, Any], shape: str | None) -> str | None:
    """The answer reads or writes state kept at the provider."""
    if shape == ANTHROPIC:
        if body.get("container") is not None:
            return "it uses a code execution container"
        if body.get("mcp_servers"):
            return "it calls MCP servers"
        return None
    if body.get("previous_response_id") is not None:
        return "it continues a stored response (previous_response_id)"
    if body.get("conversation") is not None:
        return "it continues a stored conversation"
    if body.get("store") is True:
        return "store: true asks the provider to keep this answer"
    if body.get("background") is True:
        return "background: true answers with a job to poll"
    prompt = body.get("prompt")  # an object: Responses' stored prompt (a completion's prompt is text)
    if isinstance(prompt, dict) and prompt.get("version") is None:
        return "it uses a stored prompt without a pinned version"
    return None


def _server_tools(body: dict[str, Any], shape: str | None) -> str | None:
    if body.get("web_search_options") is not None:
        return "it searches the web (web_search_options)"
    tools = body.get("tools")
    if tools is None:
        return None
    if not isinstance(tools, list):
        return "tools is not a list"
    allowed = _CLIENT_TOOLS[shape or OPENAI]
    for tool in tools:
        if not isinstance(tool, dict):
            return "a tool is not a JSON object"
        kind = tool.get("type")
        if kind not in allowed:
            return f"it uses the provider-run tool {str(kind)[:64]!r}"
    return None


def _audio(body: dict[str, Any]) -> str | None:
    modalities = body.get("modalities")
    if body.get("audio") is not None or (isinstance(modalities, list) and "audio" in modalities):
        return "it answers with audio"
    return None


def _sampled(body: dict[str, Any], shape: str | None) -> str | None:
    temperature = body.get("temperature")
    if _is_number(temperature) and temperature == 0:
        return None
    if shape == OPENAI:
        seed = body.get("seed")
        if isinstance(seed, int) and not isinstance(seed, bool):
            return None
        return "it samples: temperature is not 0 and no seed is set"
    return "it samples: temperature is not 0"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def canonical(value: Any) -> bytes:
    """One byte string per JSON value, whatever its key order and whitespace (ASCII, so lone surrogates from
    a JSON escape are kept too). Numbers are kept as written: 0 and 0.0 may differ to an API that checks types."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def answer_fields(body: Mapping[str, Any], endpoint: str) -> dict[str, Any]:
    """The body without the fields that cannot change the answer (_NEUTRAL_FIELDS)."""
    neutral = _NEUTRAL_FIELDS.get(endpoint, frozenset())
    return {k: v for k, v in body.items() if k not in neutral}


def cache_key(
    provider: str,
    model: str | None,
    workflow: str,
    virtual_key_digest: str,
    endpoint: str,
    stream: bool,
    body: Mapping[str, Any],
    *,
    headers: Mapping[str, str] | None = None,
    query: str = "",
) -> str:
    """The sha256 hex an answer is stored under. `virtual_key_digest`: the sha256 hex of the key the client
    presented ("" when none), never the key itself. `headers`: the request's (only ANSWER_HEADERS count);
    `query`: the raw query string (Azure's api-version; credentials in it are left out)."""
    if virtual_key_digest and not _DIGEST.fullmatch(virtual_key_digest):
        raise ValueError("virtual_key_digest must be a lowercase sha256 hex digest, never the key itself")
    lowered = {name.lower(): value.strip() for name, value in (headers or {}).items()}
    params = sorted((k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k.lower() not in _SECRET_PARAMS)
    envelope = {
        "v": KEY_VERSION,
        "provider": provider,
        "model": model or "",
        "workflow": workflow,
        "client_key": virtual_key_digest,
        "endpoint": endpoint,
        "stream": bool(stream),
        "headers": {name: lowered[name] for name in ANSWER_HEADERS if name in lowered},
        "query": params,
        "body": answer_fields(body, endpoint),
    }
    return hashlib.sha256(canonical(envelope)).hexdigest()


def call_key(
    cache: CacheConfig,
    provider: str,
    endpoint: Endpoint,
    model: str | None,
    workflow: str,
    stream: bool,
    body: dict[str, Any],
    headers: Mapping[str, str],
    query: bytes,
    presented: str | None,
) -> str | None:
    """The key of a call's answer, when the cache is on for its workflow and the call is repeatable; else None.
    `presented`: the key the client sent (a virtual key, or its own provider key), counted by its digest."""
    if not cache.enabled or (cache.workflows and workflow not in cache.workflows):
        return None
    if cacheable(body, endpoint.shape, endpoint.name) is not None:
        return None
    digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).hexdigest() if presented else ""
    text = query.decode("latin-1")
    return cache_key(provider, model, workflow, digest, endpoint.name, stream, body, headers=headers, query=text)
