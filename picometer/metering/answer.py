"""Usage read from a JSON answer too big to hold: passed on as it arrives, with only its head, its tail and
a count of billed tool items kept. Pure.

Every API puts `usage` after the content (and `model` before it), so the tail holds the bill; an answer
whose usage is not in its last TAIL_BYTES is estimated, never zero.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

from picometer.metering.usage import Usage, from_response

HEAD_BYTES = 65_536
TAIL_BYTES = 262_144
_OVERLAP = 64  # a tool item's type split across two pieces is still counted
_MODEL = re.compile(rb'"model"\s*:\s*"([^"\\]{1,256})"')
_TIER = re.compile(rb'"service_tier"\s*:\s*"([a-z_]{1,32})"')
_USAGE = re.compile(rb'"usage"\s*:\s*\{')
# Gemini's answer names its usage and model otherwise; Ollama's counts sit on the answer itself.
_GEMINI_USAGE = re.compile(rb'"usageMetadata"\s*:\s*\{')
_GEMINI_MODEL = re.compile(rb'"modelVersion"\s*:\s*"([^"\\]{1,256})"')
_OLLAMA_COUNTS = re.compile(rb'"(prompt_eval_count|eval_count)"\s*:\s*(\d{1,12})')
_TOOL_ITEMS = {
    "web_search": re.compile(rb'"type"\s*:\s*"web_search_call"'),
    "file_search": re.compile(rb'"type"\s*:\s*"file_search_call"'),
}


class AnswerScan:
    """Watches the pieces of one JSON answer on their way to the client."""

    def __init__(self) -> None:
        self.head = bytearray()
        self.tail = bytearray()
        self.tools: dict[str, int] = {}
        self._edge = b""  # the end of the previous piece, for items split across pieces

    def feed(self, piece: bytes) -> None:
        if len(self.head) < HEAD_BYTES:
            self.head += piece[: HEAD_BYTES - len(self.head)]
        window = self._edge + piece
        for name, pattern in _TOOL_ITEMS.items():
            # Matches wholly inside the old edge were counted with the previous piece.
            n = sum(1 for m in pattern.finditer(window) if m.end() > len(self._edge))
            if n:
                self.tools[name] = self.tools.get(name, 0) + n
        self._edge = window[-_OVERLAP:]
        self.tail += piece
        if len(self.tail) > 2 * TAIL_BYTES:
            del self.tail[: len(self.tail) - TAIL_BYTES]

    def usage(self, shape: str) -> tuple[Usage | None, str | None, dict[str, Any] | None]:
        """(usage, the answer's model, a stand-in answer with its `usage` object for per-call pricing)."""
        if shape == "gemini":
            model = _first(_GEMINI_MODEL, self.head) or _first(_GEMINI_MODEL, bytes(self.tail))
            metadata = _last_object(bytes(self.tail[-TAIL_BYTES:]), _GEMINI_USAGE)
            return from_response(shape, {"usageMetadata": metadata, "modelVersion": model})[0], model, None
        model = _first(_MODEL, self.head)
        if shape == "ollama":
            counts = {m.group(1).decode(): int(m.group(2)) for m in _OLLAMA_COUNTS.finditer(self.tail[-TAIL_BYTES:])}
            return from_response(shape, {**counts, "model": model})[0], model, None
        found = _last_object(bytes(self.tail[-TAIL_BYTES:]), _USAGE)
        if found is None:
            return None, model, None
        answer: dict[str, Any] = {"usage": found}
        if model is not None:
            answer["model"] = model
        tier = _first(_TIER, self.head) or _first(_TIER, bytes(self.tail))
        if tier is not None:
            answer["service_tier"] = tier
        usage, _ = from_response(shape, answer)
        if usage is not None and self.tools:
            usage = replace(usage, tool_calls=tuple(sorted(self.tools.items())))
        return usage, model, answer


def _first(pattern: re.Pattern[bytes], data: bytes | bytearray) -> str | None:
    m = pattern.search(data)
    return m.group(1).decode("utf-8", "replace") if m else None


def _last_object(tail: bytes, key: re.Pattern[bytes]) -> dict[str, Any] | None:
    """The value of the last `"usage": {...}` (or the key given) in the tail that decodes as a JSON object."""
    decoder = json.JSONDecoder()
    starts = [m.end() - 1 for m in key.finditer(tail)]
    for start in reversed(starts):
        try:
            value, _ = decoder.raw_decode(tail[start:].decode("utf-8", "replace"))
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None
