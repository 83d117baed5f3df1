"""One record per client request, and the single path every record takes to storage."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import math
import re
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import structlog

from picometer.throttle import Throttled

log = structlog.get_logger("picometer.record")

# Where a request keeps its prompt: OpenAI, Anthropic and Ollama, then Gemini (camelCase and snake_case).
PROMPT_KEYS = (
    "system",
    "instructions",
    "messages",
    "input",
    "prompt",
    "contents",
    "systemInstruction",
    "system_instruction",
)


@dataclass(slots=True)
class Record:
    """The fields of a usage-log line (CONTRACT §5), in that order."""

    ts: str
    request_id: str
    correlation_id: str | None = None
    workflow: str = "untagged"
    env: str = "prod"
    tenant: str | None = None
    prompt_version: str | None = None
    provider: str = ""
    endpoint: str = ""
    model: str | None = None
    response_model: str | None = None
    stream: bool = False
    status: str = "ok"  # ok | error | blocked
    http_status: int = 0
    error_type: str | None = None
    attempts: int = 0
    input_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    usage_source: str = "none"  # provider | estimated | none
    cost_usd: float | None = 0.0
    price_source: str | None = None
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    prompt_hash: str | None = None
    budget: str | None = None
    canary: bool = False
    service_tier: str | None = None  # the tier the provider served and billed (OpenAI priority, flex)
    cache_write_1h_tokens: int = 0  # part of cache_write_tokens
    audio_input_tokens: int = 0  # part of input_tokens
    audio_output_tokens: int = 0  # part of output_tokens
    tool_calls: dict[str, int] | None = None  # server-side tools billed per use: {"web_search": 3}
    tool_cost_usd: float = 0.0  # part of cost_usd
    batch: bool = False  # priced at the batch rate
    conversation: str | None = None  # hash of the conversation's opening (agent_loop); none with store_prompts = "none"
    fallback_from: str | None = None  # "provider/model" the call asked for, when another answered it
    fallback_reason: str | None = None  # why the provider asked did not answer: server_error, quota_exceeded, ...
    downgraded_from: str | None = None  # "provider/model" the call asked for, when a cap sent it to a cheaper one
    cache_hit: bool = False  # answered from picometer's cache: nothing paid
    cost_saved_usd: float = 0.0  # what the cached answer cost when it was first bought
    prompt: str | None = None  # only with store_prompts = "redacted", and then redacted

    def to_json(self) -> str:
        """The line as json.dumps(ensure_ascii=False, separators=(",", ":")) writes it; the prompt only when kept
        (store_prompts = "redacted")."""
        return _line(self)


RECORD_FIELDS = tuple(f.name for f in dataclasses.fields(Record))
assert RECORD_FIELDS[-1] == "prompt"
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_text = json.encoder.encode_basestring  # the C function the encoder itself uses for a str, ensure_ascii=False


def _value(v: Any) -> str:
    kind = type(v)
    if kind is str:
        return _text(v)
    if v is None:
        return "null"
    if kind is bool:
        return "true" if v else "false"
    if kind is int or (kind is float and math.isfinite(v)):
        return repr(v)  # what the encoder writes for them
    return _encode(v)  # the rest (a dict, NaN) as the encoder writes it


# Each field's value written by the type it is declared with, any other value by _value: the common cases cost no
# call of ours. `v` holds the field read.
_BY_TYPE = {
    "str": "_text(v) if type(v := r.{0}) is str else _value(v)",
    "str | None": "'null' if (v := r.{0}) is None else _text(v) if type(v) is str else _value(v)",
    "int": "repr(v) if type(v := r.{0}) is int else _value(v)",
    "bool": "('true' if v else 'false') if type(v := r.{0}) is bool else _value(v)",
}


def _line_writer() -> Callable[[Record], str]:
    """Record.to_json written out field by field, keys and commas as constants, as dataclasses write __init__:
    every record is written on its call's path, and this takes half the time of a loop over the fields."""
    *fields, prompt = dataclasses.fields(Record)
    parts = []
    for i, f in enumerate(fields):
        parts.append(repr(("{" if i == 0 else ",") + _encode(f.name) + ":"))
        parts.append(_BY_TYPE.get(str(f.type), "_value(r.{0})").format(f.name))
    last = f"'}}' if (v := r.{prompt.name}) is None else {',' + _encode(prompt.name) + ':'!r} + _value(v) + '}}'"
    source = f"def to_json(r):\n    return ''.join(({', '.join(parts)}, {last}))\n"
    scope: dict[str, Any] = {"_text": _text, "_value": _value}
    exec(source, scope)  # our own source, from the dataclass's field names and types
    writer: Callable[[Record], str] = scope["to_json"]
    return writer


_line = _line_writer()


def rfc3339_ms(at: datetime) -> str:
    """UTC to the millisecond, "2026-01-31T12:00:00.123Z" (isoformat is C; strftime costs several µs a call)."""
    return at.isoformat(timespec="milliseconds")[:23] + "Z"


def prompt_parts(body: Mapping[str, Any]) -> dict[str, Any]:
    return {k: body[k] for k in PROMPT_KEYS if k in body}


def prompt_hash(body: Mapping[str, Any]) -> str | None:
    """A short, stable fingerprint of the prompt: same prompt, same hash (duplicate detection)."""
    parts = prompt_parts(body)
    if not parts:
        return None
    # ASCII with escapes: the same text twice as fast as UTF-8 output, and any lone surrogate is just an escape.
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()[:16]


_REDACTIONS = (
    (re.compile(r"\b(sk|pm|sk-ant|xox[abp])-[A-Za-z0-9_\-]{8,}"), "[key]"),
    (re.compile(r"(?i)bearer\s+[A-Za-z0-9._\-]{8,}"), "Bearer [key]"),
    # Bounded as addresses are (64 before the @, RFC 5321): unbounded, a long run of word characters without one
    # is rescanned from each position (seconds for 40 KB).
    (re.compile(r"[\w.+-]{1,64}@[\w-]{1,63}\.[\w.-]{1,190}"), "[email]"),
    (re.compile(r"\+?\d[\d\s().-]{7,}\d"), "[number]"),
)


def redact(text: str) -> str:
    """Keys, e-mail addresses and long numbers (phones, cards, accounts) out of a prompt."""
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


def redacted_prompt(body: Mapping[str, Any], limit: int = 2000) -> str | None:
    parts = prompt_parts(body)
    if not parts:
        return None
    return redact(json.dumps(parts, ensure_ascii=False, separators=(",", ":")))[:limit]


class LogSink(Protocol):
    def write(self, record: Record) -> Any:
        """Persist the record; return its position in the log, or None if it was dropped."""


class RollupSink(Protocol):
    def add(self, record: Record, position: Any) -> None: ...


class Recorder:
    """The one path of every finished record: the usage log at once (a crash after the client's last byte must
    not lose it), then rollups with the log position and the observers when a call's task ends (this one's or
    another's) or at the daemon's tick, off the reply's path: they are memory only, rebuilt from the log."""

    def __init__(
        self, usage_log: LogSink, rollups: RollupSink, observe: Callable[[Record], None] | None = None
    ) -> None:
        self._log = usage_log
        self._rollups = rollups
        self._observe = observe  # the anomaly watchers
        self._errors = Throttled(log)  # a broken disk fails every record: one line a minute
        self._later: deque[tuple[Record, Any]] = deque()  # written, not yet folded: at most the calls in flight
        self._draining = False  # a drain is scheduled on the loop (a record written outside any task)

    def __call__(self, record: Record) -> None:
        position = None
        try:
            position = self._log.write(record)
        except Exception:  # a failing log must never fail the request
            self._errors.exception("usage log write failed")
        self._later.append((record, position))
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (a command, a test): at once
            self.drain()
            return
        # Once the call's task has ended: its reply is out, and nothing here competes with its last bytes. A
        # call kept open after its last event waits for the daemon's next tick at the latest (Daemon.tick).
        task = asyncio.current_task(loop)
        if task is not None:
            task.add_done_callback(self._drain_after)
        elif not self._draining:
            loop.call_soon(self.drain)
            self._draining = True

    def _drain_after(self, task: asyncio.Task[Any]) -> None:
        self.drain()

    def drain(self) -> None:
        """Fold every written record into the rollups and show it to the observers, in order."""
        self._draining = False  # first: whatever happens below, the next record schedules a drain again
        while self._later:
            record, position = self._later.popleft()
            try:
                self._rollups.add(record, position)
            except Exception:
                self._errors.exception("rollup fold failed")
            if self._observe is not None:
                try:
                    self._observe(record)
                except Exception:
                    self._errors.exception("watcher failed")
