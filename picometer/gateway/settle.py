"""One record per request, built in one place from what was asked and what happened.

Admission says what the request was (`Facts`, `Admitted`); the upstream call and the relay write down
what happened (`Outcome`); `verdict` alone decides status and error type, and `build_record` alone
decides usage and cost.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

import structlog

from picometer.config import ProviderConfig, Secret
from picometer.frozen import frozen
from picometer.gateway.fingerprint import Fingerprint
from picometer.gateway.path import Route
from picometer.gateway.tags import Tags
from picometer.metering.audio_prices import SPEECH
from picometer.metering.batch import BatchMeter
from picometer.metering.budget import Hold, to_usd
from picometer.metering.endpoints import Endpoint
from picometer.metering.fees import chat_search, request_tools
from picometer.metering.limits import choices, limit_fields, output_limit, thinking_allowance
from picometer.metering.media import media_cost
from picometer.metering.pricing import Pricer, Quote
from picometer.metering.tokens import TOKEN_FIELDS
from picometer.metering.usage import Usage, estimate_tokens, request_text_chars
from picometer.record import Record, rfc3339_ms
from picometer.throttle import Throttled

log = Throttled(structlog.get_logger("picometer.gateway"))  # a buggy provider is wrong on every call


@frozen
class Facts:
    """What is known of a request when it is recorded, however far it got."""

    request_id: str
    started: datetime  # wall time it arrived: the record's ts and the budget period it counts in
    t0: float  # monotonic time it arrived
    provider: str = ""
    endpoint: str = ""
    model: str | None = None
    stream: bool = False
    canary: bool = False
    tags: Tags | None = None
    budget: str | None = None  # the cap that refused it, or an alert-only cap it runs past
    # A refused call's prompt fingerprint; an admitted call's is in Admitted.fingerprint, taken later.
    prompt_hash: str | None = None
    prompt: str | None = None
    conversation: str | None = None  # picometer.conversation: what an agent loop re-sends unchanged
    downgraded_from: str | None = None  # "provider/model" asked, when a cap sent the call to a cheaper model
    fallback_from: str | None = None  # "provider/model" asked, when another provider answered
    fallback_reason: str | None = None


class Prepared:
    """What a call's record needs from its request alone (Admitted.while_waiting)."""

    __slots__ = ("bound", "record", "tools")

    def __init__(self) -> None:
        self.record: Record | None = None  # the request's fields filled in; the outcome's are added later
        self.bound: int | None = None  # the most output tokens the call allowed (None: no limit)
        self.tools: tuple[str, ...] = ()  # the tool types the request offers (per-use fees)


@frozen
class Admitted:
    """A request that passed every check: what goes upstream, and what it is held to."""

    facts: Facts
    route: Route
    provider: ProviderConfig
    endpoint: Endpoint
    content: bytes  # the body to send upstream (ours when we changed it)
    body: dict[str, Any] | None  # the parsed JSON body, for estimates when a provider reports no usage
    provider_key: Secret | None
    hide_usage_chunk: bool  # we asked for stream usage: the client must not see that chunk
    hold: Hold | None  # the budget reservation, settled with the record
    flat_usd: float | None = None  # images and audio: the reservation, from the request alone
    fields: Mapping[str, Any] | None = None  # images and audio: the request's fields (JSON or small form fields)
    client_shape: str | None = None  # a substitute speaking another API: the shape its answer is translated to
    client_usage: bool = False  # the client asked for its stream's usage (translated streams carry it only then)
    cache_key: str | None = None  # where its answer is kept in the cache ([cache]), when it may be
    fingerprint: Fingerprint | None = None  # its prompt's, taken while the provider works (store_prompts)
    # Its record's fields from the request alone, made while the provider works (each copy makes its own).
    prepared: Prepared = field(default_factory=Prepared, init=False, repr=False, compare=False)

    def while_waiting(self) -> Prepared:
        """What the record needs from the request alone: made once the request is out (gateway.pool), or at the
        latest when the record is built."""
        p = self.prepared
        if p.record is None:
            p.bound = _output_bound(self)
            p.tools = request_tools(self.body)
            p.record = draft_record(self.facts, self.fingerprint.take() if self.fingerprint is not None else None)
        return p


def draft_record(facts: Facts, fp: Fingerprint | None) -> Record:
    """A record with the fields the facts (and the prompt's fingerprint) give."""
    rec = Record(ts=rfc3339_ms(facts.started), request_id=facts.request_id)
    tags = facts.tags
    if tags is not None:
        rec.workflow, rec.env, rec.tenant = tags.workflow, tags.env, tags.tenant
        rec.prompt_version, rec.correlation_id = tags.prompt_version, tags.correlation_id
    rec.provider, rec.endpoint, rec.model, rec.stream = facts.provider, facts.endpoint, facts.model, facts.stream
    rec.canary, rec.budget, rec.prompt_hash, rec.prompt = facts.canary, facts.budget, facts.prompt_hash, facts.prompt
    rec.conversation = facts.conversation
    if fp is not None:
        rec.prompt_hash, rec.conversation, rec.prompt = fp.prompt_hash, fp.conversation, fp.prompt
    rec.downgraded_from, rec.fallback_from, rec.fallback_reason = (
        facts.downgraded_from,
        facts.fallback_from,
        facts.fallback_reason,
    )
    return rec


@dataclass(slots=True)
class Outcome:
    """What happened to one request, written down as it happens; read once, by `verdict`."""

    blocked: str | None = None  # refused before forwarding: the refusal's code
    forwarded: bool = False  # past every check: what happens now is the provider's doing
    attempts: int = 0
    reached: bool = False  # the provider may have done (billable) work
    upstream_status: int = 0  # what the provider answered
    http_status: int = 0  # what the client got
    failure: str | None = None  # why there is no good answer: the upstream's error, a timeout, a bad body
    started_reply: bool = False  # the response status went to the client: no retry, no refusal now
    complete: bool = False  # the client has the whole answer
    expects_terminal: bool = False  # a metered stream: complete only once its terminal event is relayed
    terminal: bool = False  # that event was relayed to the client
    stream_error: str | None = None  # the provider reported a failure inside the stream
    cut: str | None = None  # the first thing that broke the answer off: the client left, the provider cut it
    usage: Usage | None = None
    response_model: str | None = None
    answer: Any = None  # images and audio: the provider's parsed JSON answer, priced by metering.media
    batch: BatchMeter | None = None  # batch results: what their lines used and cost
    batch_repeat: bool = False  # these batch results were read through picometer before: counted then
    text_chars: int = 0  # streamed text seen, for an estimate when the provider reports no usage
    ttft_ms: float | None = None
    record: Record | None = None  # built and priced: nothing that happens later changes it
    written: bool = False  # the record went to storage and its reservation was settled
    served: Admitted | None = None  # the fallback's request, once one is answering instead of the provider asked
    saved_usd: float | None = None  # answered from the cache: what the answer cost when it was bought

    @property
    def done(self) -> bool:
        """The client has what it asked for: a hang-up from here on is no failure."""
        return self.complete or self.terminal

    def break_off(self, why: str) -> None:
        self.cut = self.cut or why


class Finish(Protocol):
    def __call__(self, write: bool = True) -> Record:
        """The call's record, built once; with `write`, also settled and handed to storage (once)."""


def verdict(o: Outcome) -> tuple[str, str | None]:
    """(status, error_type): the only place they are decided."""
    if o.blocked is not None:
        return "blocked", o.blocked
    if o.terminal:  # a stream is judged by its terminal event, whatever the client or provider did after
        return ("error", o.stream_error) if o.stream_error else ("ok", None)
    if o.failure:
        return "error", o.failure
    if o.stream_error:
        return "error", o.stream_error
    if o.cut:
        return "error", o.cut
    if o.expects_terminal and o.complete:
        return "error", "stream_truncated"  # the body ended, but the answer's last event never came
    if not o.complete:
        return "error", "client_disconnected"
    return "ok", None


def build_record(
    facts: Facts,
    o: Outcome,
    *,
    admitted: Admitted | None,
    pricer: Pricer,
    now: datetime,
    latency_ms: float,
) -> Record:
    """The usage-log line for this request."""
    if admitted is not None:
        rec = admitted.while_waiting().record
        assert rec is not None
    else:
        rec = draft_record(facts, None)
    rec.status, rec.error_type = verdict(o)
    rec.http_status, rec.attempts = o.http_status, o.attempts
    rec.response_model, rec.ttft_ms, rec.latency_ms = o.response_model, o.ttft_ms, latency_ms
    rec.cost_usd = 0.0
    if admitted is None:
        return rec
    if o.saved_usd is not None:
        rec.cache_hit, rec.cost_saved_usd = True, o.saved_usd
        return rec
    if o.batch is not None and o.batch.results:
        _charge_batch(rec, o.batch, o.batch_repeat)
        return rec
    usage = o.usage
    upstream_ok = 200 <= o.upstream_status < 300
    if usage is not None:
        rec.usage_source = "provider"
        # A stream cut before its last event may carry only an input count (Gemini's early chunks): the text
        # relayed so far is then the output's estimate, never zero.
        seen = estimate_tokens(o.text_chars)
        if o.expects_terminal and not o.terminal and usage.output_tokens == 0 and seen:
            usage = replace(usage, output_tokens=seen)
            rec.usage_source = "estimated"
    elif (
        admitted.flat_usd is None and admitted.endpoint.metered and o.reached and (upstream_ok or not o.upstream_status)
    ):
        # The provider did (some) work but reported nothing: estimate, never assume zero.
        usage = Usage(
            input_tokens=estimate_tokens(request_text_chars(admitted.body or {})),
            output_tokens=estimate_tokens(o.text_chars),
        )
        rec.usage_source = "estimated"
    if usage is not None:
        usage = _within_request(usage, admitted)
        _write_usage(rec, usage)
    if admitted.flat_usd is not None:
        charged = o.reached and (upstream_ok or not o.upstream_status)
        if charged:
            _charge_media(rec, admitted, o)
        return rec
    if usage is not None:
        quote = _quote(admitted, usage, (rec.response_model, rec.model), pricer, now)
        rec.cost_usd, rec.price_source, rec.tool_cost_usd = quote.cost_usd, quote.source, quote.tool_cost_usd
    return rec


def usage_cost(
    admitted: Admitted, usage: Usage, response_model: str | None, pricer: Pricer, now: datetime
) -> float | None:
    """What a token call's reported `usage` costs, priced as its record will be: the cost a stream's usage chunk
    carries ([server].cost_in_body), written before the record exists."""
    usage = _within_request(usage, admitted)
    return _quote(admitted, usage, (response_model, admitted.facts.model), pricer, now).cost_usd


def _quote(admitted: Admitted, usage: Usage, models: tuple[str | None, ...], pricer: Pricer, now: datetime) -> Quote:
    """A token call's price: the one step behind both the record's cost and the cost in the answer."""
    shape, tools = admitted.endpoint.shape or "openai", admitted.while_waiting().tools
    return pricer.cost(admitted.provider, models, usage, now, shape=shape, request_tools=tools)


def _charge_batch(rec: Record, m: BatchMeter, repeat: bool) -> None:
    """Batch results: every line's usage, each priced at the batch rate; counted the first time they are read."""
    rec.batch, rec.response_model = True, m.model
    if repeat:
        rec.cost_usd, rec.price_source = 0.0, "batch:counted-before"
        return
    rec.usage_source = "provider"
    _write_usage(rec, m.usage)
    if m.unpriced:
        rec.cost_usd, rec.price_source = None, "unpriced"  # never a silent zero: the lines have no known price
        return
    rec.cost_usd, rec.tool_cost_usd, rec.price_source = round(m.cost_usd, 12), round(m.tool_cost_usd, 12), "batch"


def _charge_media(rec: Record, admitted: Admitted, o: Outcome) -> None:
    """Images and audio: priced from the request and the answer, never above the reservation."""
    if admitted.provider.free:
        rec.cost_usd, rec.price_source = 0.0, "free"
        return
    answer = o.answer
    if answer is None and o.usage is not None and admitted.endpoint.name == SPEECH:
        # Speech streamed as SSE: its last event's usage (the stream meter read it) is what the call billed.
        answer = {"usage": {"input_tokens": o.usage.input_tokens, "output_tokens": o.usage.output_tokens}}
    charge = media_cost(admitted.endpoint.name, rec.model, admitted.fields or {}, len(admitted.content), answer)
    rec.cost_usd, rec.price_source = charge.cost_usd, charge.source
    if charge.input_tokens or charge.output_tokens:  # the tokens priced, as held to the request's bounds
        rec.usage_source = "provider"
        rec.input_tokens, rec.output_tokens = charge.input_tokens, charge.output_tokens
        rec.audio_input_tokens, rec.audio_output_tokens = charge.audio_input_tokens, charge.audio_output_tokens


def _write_usage(rec: Record, u: Usage) -> None:
    for name in TOKEN_FIELDS:
        setattr(rec, name, getattr(u, name))
    rec.tool_calls = dict(u.tool_calls) or None
    rec.service_tier = u.service_tier


def fallback_record(facts: Facts, o: Outcome, admitted: Admitted | None, latency_ms: float) -> Record:
    """The record when building the real one failed (a bug): an error, charged what the call held."""
    rec = Record(ts=rfc3339_ms(facts.started), request_id=facts.request_id, provider=facts.provider)
    rec.endpoint, rec.model, rec.stream, rec.canary = facts.endpoint, facts.model, facts.stream, facts.canary
    rec.fallback_from, rec.fallback_reason, rec.downgraded_from = (
        facts.fallback_from,
        facts.fallback_reason,
        facts.downgraded_from,
    )
    if facts.tags is not None:
        rec.workflow, rec.env = facts.tags.workflow, facts.tags.env
    rec.status, rec.error_type, rec.http_status, rec.attempts = "error", "internal_error", o.http_status, o.attempts
    held = admitted.hold.amount if admitted is not None and admitted.hold is not None else 0
    rec.cost_usd, rec.price_source, rec.latency_ms = to_usd(held), "reservation", latency_ms
    return rec


def _output_bound(admitted: Admitted) -> int | None:
    """The most output tokens the request allows, thinking and every choice included; None when unbounded."""
    endpoint = admitted.endpoint
    if admitted.body is None or endpoint.shape is None:
        return None
    limit = output_limit(admitted.body, limit_fields(endpoint.shape, endpoint.name))
    thinking = thinking_allowance(admitted.body, endpoint.shape)
    return None if limit is None else (limit + thinking) * choices(admitted.body, endpoint.name)


def _within_request(usage: Usage, admitted: Admitted) -> Usage:
    """A provider never writes more than the call allowed: output beyond the request's own limit is a provider
    bug (or garbage), held to that limit and logged, so one bad answer cannot charge a fortune. A chat call to a
    search model is billed its search, which its answer does not mention."""
    searched = chat_search(usage.tool_calls, admitted.endpoint.name, admitted.facts.model)
    if searched is not usage.tool_calls:
        usage = replace(usage, tool_calls=searched)
    bound = admitted.while_waiting().bound
    if bound is None or usage.output_tokens <= bound:
        return usage
    log.warning(
        "provider reported more output than the call allowed; held to the limit",
        provider=admitted.facts.provider,
        reported=usage.output_tokens,
        limit=bound,
    )
    return replace(
        usage,
        output_tokens=bound,
        reasoning_tokens=min(usage.reasoning_tokens, bound),
        audio_output_tokens=min(usage.audio_output_tokens, bound),
    )
