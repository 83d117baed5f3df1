"""Batch results read as they pass through: each result line's usage, priced at the batch rate. Pure.

OpenAI: `GET files/{id}/content` of a batch's output file, lines `{"custom_id", "response": {"status_code",
"body": {...usage}}}`; any other file passes through with nothing counted. Anthropic: `GET
messages/batches/{id}/results`, lines `{"custom_id", "result": {"type": "succeeded", "message": {...usage}}}`.
Each line is priced on its own (tiered prices apply per request, not to a batch's sum).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from picometer.metering.json_value import loads
from picometer.metering.tokens import TOKEN_FIELDS
from picometer.metering.usage import Usage, from_response

MAX_LINE = 8_000_000  # bytes of one result line; a longer one is counted as unreadable, not buffered on


def add(a: Usage, b: Usage) -> Usage:
    """Two usages summed (tool calls by name); the tier kept only when both agree."""
    tools = dict(a.tool_calls)
    for name, n in b.tool_calls:
        tools[name] = tools.get(name, 0) + n
    return Usage(
        **{f: getattr(a, f) + getattr(b, f) for f in TOKEN_FIELDS},
        tool_calls=tuple(sorted(tools.items())),
        service_tier=a.service_tier if a.service_tier == b.service_tier else None,
    )


# (model, usage) -> (dollars or None when unknown, tool fees)
Price = Callable[[str | None, Usage], tuple[float | None, float]]


@dataclass
class BatchMeter:
    """Counts the results of one batch as its JSON lines go by."""

    shape: str  # "openai" | "anthropic"
    price: Price
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    tool_cost_usd: float = 0.0
    results: int = 0  # lines with usage
    unpriced: int = 0  # of those, lines whose model has no known price
    unreadable: int = 0  # lines that could not be read (too long, not JSON)
    models: dict[str, int] = field(default_factory=dict)  # results per model, at most 64 names
    _pending: bytearray = field(default_factory=bytearray)
    _skipping: bool = False  # inside a line longer than MAX_LINE: dropped up to its end

    def feed(self, chunk: bytes) -> None:
        if self._skipping:
            end = chunk.find(b"\n")
            if end < 0:
                return
            chunk, self._skipping = chunk[end + 1 :], False
        self._pending += chunk
        end = self._pending.rfind(b"\n")
        if end >= 0:
            for line in bytes(self._pending[:end]).split(b"\n"):
                self._line(line)
            del self._pending[: end + 1]
        if len(self._pending) > MAX_LINE:
            self.unreadable += 1
            self._pending.clear()
            self._skipping = True

    def close(self) -> None:
        if not self._skipping:
            self._line(bytes(self._pending))
        self._pending.clear()

    @property
    def model(self) -> str | None:
        """The model most results used."""
        return max(self.models, key=self.models.__getitem__) if self.models else None

    def _line(self, line: bytes) -> None:
        if not line.strip():
            return
        try:
            item = loads(line)
        except ValueError:
            self.unreadable += 1
            return
        usage, model = self._result(item)
        if usage is None:
            return
        usage = replace(usage, service_tier=None)  # batch results are billed at the batch rate, whatever they say
        self.results += 1
        self.usage = add(self.usage, usage)
        if model is not None and (model in self.models or len(self.models) < 64):
            self.models[model] = self.models.get(model, 0) + 1
        cost, tools = self.price(model, usage)
        if cost is None:
            self.unpriced += 1
        else:
            self.cost_usd += cost
            self.tool_cost_usd += tools

    def _result(self, item: Any) -> tuple[Usage | None, str | None]:
        if not isinstance(item, Mapping):
            return None, None
        if self.shape == "anthropic":
            result = item.get("result")
            if not isinstance(result, Mapping) or result.get("type") != "succeeded":
                return None, None  # errored, canceled and expired requests are not billed
            return from_response("anthropic", result.get("message"))
        response = item.get("response")
        body = response.get("body") if isinstance(response, Mapping) else None
        return from_response("openai", body)
