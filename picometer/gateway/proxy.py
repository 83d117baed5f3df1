"""A proxied call from arrival to record: admission, the upstream call while watching the client, the relay,
and one record with its reservation settled, whatever happens on the way."""

from __future__ import annotations

import asyncio
import random
from collections import OrderedDict
from dataclasses import dataclass, field, replace

import httpx
import structlog

from picometer.asgi import Receive, Scope, Send
from picometer.cache.store import CacheStore
from picometer.clock import Clock
from picometer.config import Config
from picometer.gateway import held_head
from picometer.gateway.admin import header_map, respond
from picometer.gateway.admission import Admission, Turned
from picometer.gateway.body import ClientGone
from picometer.gateway.cached import Capture, keeper, replay
from picometer.gateway.cost_in_body import carries_cost
from picometer.gateway.inflow import AnswersHeld, framing
from picometer.gateway.refusals import Refusal, error_body, shape_for_refusal
from picometer.gateway.relay import CostOf
from picometer.gateway.settle import Admitted, Facts, Finish, Outcome, build_record, fallback_record, usage_cost
from picometer.gateway.streamed import StreamRelay
from picometer.gateway.translated import Translation
from picometer.gateway.upstream import Upstream
from picometer.metering.batch import BatchMeter
from picometer.metering.budget import Budget, to_pico
from picometer.metering.pricing import Pricer
from picometer.metering.usage import Usage
from picometer.record import Record, Recorder
from picometer.throttle import Throttled

# A call not answered this far in waits on a model: from here on its client is watched for a hang-up.
WAITING_S = 0.05
MAX_BATCHES_REMEMBERED = 4096  # batch result paths kept to count each once; the oldest forgotten first

log = Throttled(structlog.get_logger("picometer.gateway"))  # a bug hit by every request: one line a minute


@dataclass
class Stats:
    requests: int = 0
    cost_usd: float = 0.0
    by_status: dict[str, int] = field(default_factory=lambda: {"ok": 0, "error": 0, "blocked": 0})


class Proxy:
    """Every proxied call, one at a time each: what the gateway routes to when a call is not for the admin."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Clock,
        pricer: Pricer,
        recorder: Recorder,
        budget: Budget,
        admission: Admission,
        upstream: Upstream,
    ) -> None:
        self.config, self.clock, self.pricer, self.recorder, self.budget = config, clock, pricer, recorder, budget
        self.admission, self.upstream = admission, upstream
        self.stats = Stats()
        self.answers_held = AnswersHeld(config.server.max_answer_bytes_in_flight)
        self.cache = CacheStore.from_config(config)  # its file opens on first use: never while the cache is off
        # Batch results read to the end, by provider and path: read again, they are not counted twice.
        self._batches_read: OrderedDict[str, None] = OrderedDict()

    def reconfigure(self, config: Config) -> None:
        self.config = config
        self.answers_held.limit = config.server.max_answer_bytes_in_flight
        self.cache.reconfigure(config)

    async def overloaded(self, scope: Scope, send: Send) -> None:
        """More calls in flight than [server].max_in_flight: refused at once, before the body is read."""
        facts = Facts(_request_id(), self.clock.now(), self.clock.monotonic())
        o = Outcome(blocked="overloaded", http_status=503)
        self._finish(facts, o, None)
        headers = header_map(scope["headers"])
        limit = self.config.server.max_in_flight
        message = f"picometer is serving {limit} calls already ([server].max_in_flight); try again in a second"
        body = error_body(shape_for_refusal(None, None, headers, scope["path"]), "overloaded", message, 503)
        await respond(send, 503, body, facts.request_id, [(b"retry-after", b"1")])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        facts = Facts(_request_id(), self.clock.now(), self.clock.monotonic())
        headers = header_map(scope["headers"])
        o = Outcome()
        try:
            req = await self.admission.admit(facts, scope, receive, headers)
        except Turned as t:
            o.blocked, o.http_status = t.refusal.code, t.refusal.status
            self._finish(t.facts, o, None)
            shape = shape_for_refusal(t.shape, t.provider_kind, headers, scope["path"])
            body = error_body(shape, t.refusal.code, t.refusal.message, t.refusal.status)
            await respond(send, t.refusal.status, body, facts.request_id, t.refusal.headers)
            return
        except ClientGone as gone:
            o.break_off("client_disconnected")
            self._finish(gone.facts or facts, o, None)
            return
        except Exception:  # a bug of ours: the request still gets its record and a clear answer
            log.exception("request failed inside picometer", request_id=facts.request_id)
            o.failure, o.http_status = "internal_error", 500
            self._finish(facts, o, None)
            await respond(send, 500, _internal(headers, scope["path"]), facts.request_id)
            return

        def finish(write: bool = True) -> Record:
            live = o.served or req  # a fallback's request once one answers
            return self._finish(live.facts, o, live, write)

        capture = None
        try:
            # A downgraded call is not the call whose answer the cache keeps: it neither reads nor writes it.
            if req.cache_key is not None and req.facts.downgraded_from is None:
                hit = await asyncio.to_thread(self.cache.get, req.cache_key, self.clock.now())
                if hit is not None:
                    o.saved_usd, o.http_status, o.complete = hit.cost_usd or 0.0, hit.status, True
                    finish()
                    zero = self.config.server.cost_in_body and carries_cost(req.endpoint.shape, req.endpoint.name)
                    await replay(send, hit, facts.request_id, zero and not req.facts.stream)
                    return
                if not (req.facts.stream and self.config.server.cost_in_body):  # a stream's cost would replay
                    keep = keeper(self.cache, self.clock, req, o)
                    send = capture = Capture(send, self.answers_held, self.cache.max_bytes // 4, keep)
            await self._forward_guarded(req, o, scope, receive, send, finish)
        except Refusal as r:
            # Failed after forwarding (retries exhausted, timeout, garbage): an error in the API's own shape.
            o.failure, o.http_status = o.failure or r.code, r.status
            finish()
            shape = shape_for_refusal(req.endpoint.shape, req.provider.kind, headers, scope["path"])
            body = error_body(shape, r.code, r.message, r.status)
            await respond(held_head.answering(scope, send), r.status, body, facts.request_id, r.headers)
        except ClientGone:
            o.break_off("client_disconnected")
        except Exception:
            log.exception("request failed inside picometer", request_id=facts.request_id)
            o.failure = o.failure or "internal_error"
            if not o.started_reply:
                o.http_status = 500
                finish()
                body = _internal(headers, scope["path"], req.endpoint.shape)
                await respond(held_head.answering(scope, send), 500, body, facts.request_id)
        finally:
            finish()
            self.admission.release(req)
            if capture is not None:
                capture.release()

    async def _forward_guarded(
        self, req: Admitted, o: Outcome, scope: Scope, receive: Receive, send: Send, finish: Finish
    ) -> None:
        """Forward while watching the client and the clock, on one timer per call: WAITING_S in, the watch on the
        client starts (a call answered sooner costs no watcher at all), and at total_timeout_s the call is cut off.
        If the client hangs up first, the upstream call is cancelled too."""
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        hung_up = timed_out = False
        watcher: asyncio.Future[None] | None = None
        total = req.provider.total_timeout_s
        deadline = loop.time() + total
        timer: asyncio.TimerHandle

        def on_disconnect(w: asyncio.Future[None]) -> None:
            nonlocal hung_up
            # After a complete response the server reports a disconnect too: that one is no hang-up.
            if not w.cancelled() and not o.complete:
                hung_up = True
                task.cancel()

        def over() -> None:
            nonlocal timed_out
            timed_out = True
            task.cancel()

        def waiting() -> None:
            nonlocal watcher, timer
            watcher = asyncio.ensure_future(_wait_disconnect(receive))
            watcher.add_done_callback(on_disconnect)
            timer = loop.call_at(deadline, over)

        timer = loop.call_later(WAITING_S, waiting) if total > WAITING_S else loop.call_at(deadline, over)
        cancels = task.cancelling()  # the ones made elsewhere (a server shutting down) are not ours to take back
        try:
            await self._forward(req, o, scope, send, finish)
        except asyncio.CancelledError:
            if not (hung_up or timed_out):
                raise
            for _ in range(hung_up + timed_out):  # each of ours taken back once
                task.uncancel()
            if task.cancelling() > cancels:
                raise
            if hung_up:
                raise ClientGone from None
            self._timed_out(req, o)
        finally:
            timer.cancel()
            if watcher is not None:
                watcher.remove_done_callback(on_disconnect)
                watcher.cancel()

    def _timed_out(self, asked: Admitted, o: Outcome) -> None:
        """Past total_timeout_s: a reply under way is cut off, as the provider's would be; else a 504."""
        o.break_off("timeout")
        if o.started_reply:
            return
        o.failure, name, limit = "timeout", asked.route.provider, asked.provider.total_timeout_s
        raise Refusal(504, "upstream_timeout", f"provider {name!r} did not finish within total_timeout_s = {limit:g} s")

    async def _forward(self, asked: Admitted, o: Outcome, scope: Scope, send: Send, finish: Finish) -> None:
        o.forwarded = True
        response, req = await self._answer(asked, o, scope)
        provider, endpoint = req.provider, req.endpoint
        relay = StreamRelay(
            o,
            send,
            req.facts.request_id,
            finish,
            lambda: self._elapsed_ms(req.facts),
            self._cost_of(req),
            Translation.of(req, self.clock),
            held_head.of(scope),
            direct=not isinstance(send, Capture),  # a cached answer is kept as it is sent: through `send`
        )
        try:
            o.http_status = o.upstream_status = response.status_code
            head = framing(response.headers)
            if endpoint.shape is not None and is_stream(head.content_type, endpoint.shape):
                await relay.stream(
                    response,
                    endpoint.shape,
                    endpoint.name,
                    req.hide_usage_chunk,
                    not endpoint.flat,
                    provider.max_response_bytes,
                    head,
                )
            elif endpoint.metered:
                await relay.json(
                    response,
                    req.route.provider,
                    endpoint.shape,
                    not endpoint.flat,
                    provider.max_response_bytes,
                    self.answers_held,
                    head,
                )
            elif endpoint.batch_results:
                key = f"{req.route.provider}/{req.route.rest}"
                o.batch_repeat = key in self._batches_read
                await relay.raw(response, self._batch_meter(req, endpoint.shape or "openai"))
                if o.complete and o.batch is not None and o.batch.results:
                    self._remember_batch(key)
            else:
                await relay.raw(response)
        finally:
            await response.aclose()

    async def _answer(self, asked: Admitted, o: Outcome, scope: Scope) -> tuple[httpx.Response, Admitted]:
        """The provider's response; when it failed in a way another provider may not (retries exhausted on a
        retryable failure, its circuit open, its quota gone), the first of its fallbacks that answers. Never for a
        client error, and only before a byte went to the client."""
        call = (scope["method"], scope.get("query_string", b""), scope["headers"])
        failed: Refusal | None = None
        first: httpx.Response | None = None
        try:
            first = await self.upstream.call(asked, o, *call)
        except Refusal as r:
            failed = r
        reason = fallback_reason(o, first)
        # A timeout once the provider had the call may have been billed: not asked again elsewhere.
        if reason is None or not asked.provider.fallback or (first is None and reason == "timeout" and o.reached):
            if first is None:
                assert failed is not None
                raise failed
            return first, asked
        reached, origin = o.reached, f"{asked.route.provider}/{asked.facts.model}"
        try:
            for stand_in in self.admission.stand_ins.of(asked, asked.provider.fallback):
                live = replace(stand_in, facts=replace(stand_in.facts, fallback_from=origin, fallback_reason=reason))
                log.warning("falling back", origin=origin, to=str(live.route.provider), why=reason)
                o.failure, o.served = None, live
                try:
                    response = await self.upstream.call(live, o, *call)
                except Refusal:
                    continue
                if fallback_reason(o, response) is None:
                    if first is not None:
                        await first.aclose()
                    return response, live
                await response.aclose()
        except BaseException:
            if first is not None:
                await first.aclose()
            raise
        # Every fallback failed too: the client gets what its own provider said, recorded as its call.
        o.served, o.failure, o.reached = None, reason, reached
        if first is not None:
            return first, asked
        assert failed is not None
        raise failed

    # ------------------------------------------------------------ record

    def _elapsed_ms(self, facts: Facts) -> float:
        return round((self.clock.monotonic() - facts.t0) * 1000, 1)

    def _cost_of(self, req: Admitted) -> CostOf | None:
        """With [server].cost_in_body, for OpenAI-shaped token answers: a usage's cost, priced as the record is."""
        if req.client_shape is not None:
            return None  # a translated answer: the client's API has no usage.cost
        if not (self.config.server.cost_in_body and carries_cost(req.endpoint.shape, req.endpoint.name)):
            return None
        return lambda usage, model: usage_cost(req, usage, model, self.pricer, self.clock.now())

    def _batch_meter(self, req: Admitted, shape: str) -> BatchMeter:
        provider, at = req.provider, req.facts.started

        def price(model: str | None, usage: Usage) -> tuple[float | None, float]:
            q = self.pricer.cost(provider, (model,), usage, at, shape=shape, batch=True)
            return q.cost_usd, q.tool_cost_usd

        return BatchMeter(shape, price)

    def _remember_batch(self, key: str) -> None:
        self._batches_read[key] = None
        if len(self._batches_read) > MAX_BATCHES_REMEMBERED:
            self._batches_read.popitem(last=False)

    def _finish(self, facts: Facts, o: Outcome, req: Admitted | None, write: bool = True) -> Record:
        """Build the record, settle the reservation and hand the record to storage, exactly once per request.
        `write=False`: built and priced only (a whole answer's head needs its cost); a later call writes it."""
        rec, now = o.record, None
        if rec is None:
            ms, now = self._elapsed_ms(facts), self.clock.now()
            try:
                rec = build_record(facts, o, admitted=req, pricer=self.pricer, now=now, latency_ms=ms)
            except Exception:  # never a lost record or a hold that stays: charge what was held, and say so
                log.exception("building the record failed", request_id=facts.request_id)
                rec = fallback_record(facts, o, req, ms)
            o.record = rec
        if not write or o.written:
            return rec
        o.written = True
        if req is not None and req.hold is not None:
            self.budget.settle(req.hold, to_pico(rec.cost_usd or 0.0), now or self.clock.now())
        self.stats.requests += 1
        self.stats.by_status[rec.status] = self.stats.by_status.get(rec.status, 0) + 1
        self.stats.cost_usd += rec.cost_usd or 0.0
        self.recorder(rec)
        return rec


# What makes a fallback worth trying: the provider is down, overloaded, rate-limited past its retries, or out of
# quota. A client error (a bad request, a bad key) would fail at the fallback too.
FALLBACK_REASONS = frozenset(
    {"server_error", "overloaded", "timeout", "rate_limited", "quota_exceeded", "connect_error", "dns_error"}
    | {"circuit_open"}
)


def fallback_reason(o: Outcome, response: httpx.Response | None) -> str | None:
    """Why the call should go to a fallback, or None when the answer stands."""
    if response is not None and response.is_success:
        return None
    return o.failure if o.failure in FALLBACK_REASONS else None


def is_stream(content_type: str, shape: str) -> bool:
    """An answer relayed event by event: SSE, or Ollama's newline-delimited JSON."""
    return "text/event-stream" in content_type or (shape == "ollama" and "ndjson" in content_type)


def _internal(headers: dict[str, str], path: str, shape: str | None = None) -> bytes:
    message = "picometer failed on this request (a bug); its log has the details under this request id"
    return error_body(shape_for_refusal(shape, None, headers, path), "internal_error", message, 500)


def _request_id() -> str:
    """16 hex digits naming a call in its record, its headers and the logs: unique, not secret (no syscall)."""
    return f"{random.getrandbits(64):016x}"


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
