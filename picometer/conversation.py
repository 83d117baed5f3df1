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
    head = str(model or "") + "\x00" + "\x00".join(_pieces(opening, OPENING_CHARS)) + "\x00"
    return hashlib.sha256(head.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def first_exchange(turns: list[Any]) -> list[Any]:
    """The turns up to and including the first one from the user (a turn without a role is the user's)."""
    opening = []
    for turn in turns[:TURNS_SCANNED]:
        opening.append(turn)
        role = turn.get("role") if isinstance(turn, Mapping) else None
        if role is None or role == "user":
            break
    return opening


class _Key(str):
    """A mapping's key met in the walk: hashed as "k" and its text."""


_END = object()


def _pieces(obj: Any, budget: int) -> list[str]:
    """The structure and text of a JSON value as strings, until `budget` characters (every piece costs at least
    one, so a list of a million empty strings ends too). Walked with a stack of iterators, no recursion and no
    generator per level: a container's items are read only as far as the budget goes."""
    out: list[str] = []
    stack: list[tuple[Iterator[Any], str]] = [(iter((obj,)), "")]
    while stack:
        item = next(stack[-1][0], _END)
        if item is _END:
            piece = stack.pop()[1]
            if not piece:
                continue
        elif isinstance(item, str):  # a mapping's key, or a text
            out.append("k" if isinstance(item, _Key) else "s")
            budget -= 1
            if budget <= 0:
                break
            piece = item[:OPENING_CHARS]
        elif isinstance(item, dict):  # parsed JSON: no ABC check per node
            stack.append((_items(item), "}"))
            piece = "{"
        elif isinstance(item, list | tuple):
            stack.append((iter(item), "]"))
            piece = "["
        else:
            piece = "v" + repr(item)
        piece = piece[:budget]
        out.append(piece)
        budget -= max(len(piece), 1)
        if budget <= 0:
            break
    return out


def _items(mapping: Mapping[Any, Any]) -> Iterator[Any]:
    """A mapping's keys and values in turn (a client sends its keys in the same order every time)."""
    for key, value in mapping.items():
        if key not in IGNORED_KEYS:
            yield _Key(key)
            yield value
