"""`[server].cost_in_body`: the call's cost (USD) written into an OpenAI-shaped answer as `usage.cost`, the
field OpenRouter uses, so clients can show it without reading the usage log. Pure.

A whole answer keeps every other byte as the provider sent it (it may be megabytes of embeddings: only its
end is searched and nothing is re-serialized); a stream's usage event is small and is written anew.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any

from picometer.metering.json_value import loads

# The OpenAI-shaped answers that get it; images and audio are priced per call and carry no token usage.
ENDPOINTS = frozenset({"chat/completions", "completions", "responses", "embeddings"})
TAIL_BYTES = 262_144  # a whole answer's usage is looked for in its end (every API puts usage after the content)
_MAX_TRIES = 8  # "usage" keys tried, from the last; more in one answer's end is no answer an API sends

_USAGE_KEY = re.compile(rb'"usage"\s*:\s*\{')
# JSON strings (escapes included) and brackets: enough to follow the nesting and skip everything else.
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[{}\[\]]')
_DECODER = json.JSONDecoder()


def carries_cost(shape: str | None, endpoint: str) -> bool:
    """An answer that gets `usage.cost` when cost_in_body is on: OpenAI-shaped, billed per token."""
    return shape == "openai" and endpoint in ENDPOINTS


def answer_with_cost(tail: bytes, cost: float) -> bytes | None:
    """`tail` (the end of a JSON object, or all of it) with `cost` set in the object's own top-level `usage`;
    None when that usage is not in it. A `usage` nested deeper (in an output item) is never touched."""
    if not math.isfinite(cost):
        return None
    keys = list(_USAGE_KEY.finditer(tail))[-_MAX_TRIES:]
    for m in reversed(keys):
        if _is_key(tail, m.start()):
            spliced = _set_cost(tail, m.end() - 1, cost)
            if spliced is not None:
                return spliced
    return None


def event_data_with_cost(data: str, path: Sequence[str], cost: float) -> str | None:
    """A stream event's JSON data with `cost` set in the usage object at `path` (("usage",) for a chat chunk,
    ("response", "usage") for a Responses event); None when the data has no such object."""
    if not math.isfinite(cost):
        return None
    try:
        parsed = loads(data)
    except ValueError:
        return None
    usage: Any = parsed
    for key in path:
        usage = usage.get(key) if isinstance(usage, dict) else None
    if not isinstance(usage, dict):
        return None
    usage["cost"] = cost
    return json.dumps(parsed, ensure_ascii=False, separators=(",", ":"))


def _is_key(data: bytes, quote: int) -> bool:
    """The quote at `quote` opens an object key: the byte before it (past whitespace) is `{` or `,`. Inside a
    JSON string a quote is always escaped (`\\"`), so such a quote cannot be inside one."""
    i = quote - 1
    while i >= 0 and data[i] in b" \t\r\n":
        i -= 1
    return i >= 0 and data[i] in b"{,"


def _set_cost(tail: bytes, start: int, cost: float) -> bytes | None:
    """`tail` with the usage object opening at `start` carrying `cost`, if that object is the root's member."""
    text = tail[start:].decode("utf-8", "surrogateescape")
    try:
        usage, end = _DECODER.raw_decode(text)
    except ValueError:
        return None
    if not isinstance(usage, dict):
        return None
    stop = start + len(text[:end].encode("utf-8", "surrogateescape"))
    if not _closes_root(tail, stop):
        return None
    return tail[:start] + _usage_bytes(tail[start:stop], usage, cost) + tail[stop:]


def _closes_root(tail: bytes, pos: int) -> bool:
    """From `pos` on, the data closes exactly one object and ends: what held the usage is the root object."""
    depth = 0
    for m in _TOKEN.finditer(tail, pos):
        token = m.group()
        if token in (b"{", b"["):
            depth += 1
        elif token in (b"}", b"]"):
            if depth == 0:
                return token == b"}" and not tail[m.end() :].strip()
            depth -= 1
    return False


def _usage_bytes(raw: bytes, usage: dict[str, Any], cost: float) -> bytes:
    """The usage object with `"cost"` added last, its other bytes as they were."""
    if "cost" in usage:
        # OpenRouter sends its own usage.cost: ours (what picometer records and charges, equal to theirs unless a
        # config price overrides it) replaces it, so the answer and the log never disagree.
        usage["cost"] = cost
        return json.dumps(usage).encode()
    head = raw[:-1].rstrip()  # raw ends with the object's closing brace
    comma = b"" if head.endswith(b"{") else b", "
    return head + comma + b'"cost": ' + json.dumps(cost).encode() + raw[len(head) :]


def pieces_with_cost(parts: list[bytes], cost: float | None) -> list[bytes]:
    """A whole answer's pieces with `usage.cost` written into its end (where the usage is); as they were when
    the call has no price or its end holds no usage of its own."""
    if cost is None:
        return parts
    k, size = len(parts), 0
    while k > 0 and size < TAIL_BYTES:
        k -= 1
        size += len(parts[k])
    tail = answer_with_cost(b"".join(parts[k:]), cost)
    return parts if tail is None else [*parts[:k], tail]
