"""Which conversation a call belongs to: a short hash of what stays the same while an agent loop grows (the
model, the system prompt or instructions, and the turns up to the first user message). Pure, and bounded: at
most OPENING_CHARS of text are hashed however large the body."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from typing import Any

OPENING_CHARS = 16_384  # text hashed per call: enough to tell openings apart, cheap on a Pi
PROMPT_PREFIX_CHARS = 512  # a bare prompt (completions, Ollama generate) grows at its end: its start is the opening
CONTEXT_PREFIX = 256  # Ollama generate's `context` (token ids of the turns so far) begins with the first turn
TURNS_SCANNED = 32  # turns looked at for the first user message
SYSTEM_KEYS = ("system", "instructions", "systemInstruction", "system_instruction")
TURN_KEYS = ("messages", "contents", "input")
IGNORED_KEYS = frozenset({"cache_control"})  # moved from turn to turn by clients that cache the growing prompt


def conversation(body: Mapping[str, Any], model: str | None) -> str | None:
    """16 hex characters naming the conversation of an LLM call's JSON body; None when it has no prompt."""
    opening: list[tuple[str, Any]] = [(key, body[key]) for key in SYSTEM_KEYS if key in body]
    turns = next((body[key] for key in TURN_KEYS if key in body), None)
    if isinstance(turns, list):
        opening.append(("turns", first_exchange(turns)))
    elif turns is not None:
        opening.append(("turns", turns))  # a single string or Content: the whole of the user's part
    context = body.get("context")
    if isinstance(context, list) and context:
        opening.append(("context", context[:CONTEXT_PREFIX]))  # Ollama generate: the new prompt is not the opening
    elif "prompt" in body:
        prompt = body["prompt"]
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], str | list):
            prompt = prompt[0]  # a batch of prompts: the first names it
        opening.append(("prompt", prompt[:PROMPT_PREFIX_CHARS] if isinstance(prompt, str | list) else prompt))
    if not opening:
        return None
    digest = hashlib.sha256(str(model or "").encode("utf-8", "surrogatepass") + b"\x00")
    budget = OPENING_CHARS
    for piece in _pieces(opening):
        piece = piece[:budget]
        digest.update(piece.encode("utf-8", "surrogatepass") + b"\x00")
        budget -= max(len(piece), 1)  # every piece costs at least one: a list of a million empty strings ends too
        if budget <= 0:
            break
    return digest.hexdigest()[:16]


def first_exchange(turns: list[Any]) -> list[Any]:
    """The turns up to and including the first one from the user (a turn without a role is the user's)."""
    opening = []
    for turn in turns[:TURNS_SCANNED]:
        opening.append(turn)
        role = turn.get("role") if isinstance(turn, Mapping) else None
        if role is None or role == "user":
            break
    return opening


def _pieces(obj: Any) -> Iterator[str]:
    """The structure and text of a JSON value as strings, lazily: the caller stops once it has enough."""
    if isinstance(obj, str):
        yield "s"
        yield obj[:OPENING_CHARS]
    elif isinstance(obj, Mapping):
        yield "{"
        for key, value in obj.items():  # a client sends its keys in the same order every time
            if key in IGNORED_KEYS:
                continue
            yield "k"
            yield str(key)[:OPENING_CHARS]
            yield from _pieces(value)
        yield "}"
    elif isinstance(obj, list | tuple):
        yield "["
        for item in obj:
            yield from _pieces(item)
        yield "]"
    else:
        yield "v" + repr(obj)
