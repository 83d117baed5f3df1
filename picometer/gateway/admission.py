"""Admission: from a raw request to an admitted one, or a refusal. Route on the canonical path, read the
body, authenticate and tag, classify by API shape, then apply every policy (pauses, unmetered and
unpriced calls, the token cap) and hold the worst case against the budgets. Memory only: no I/O here
but reading the request body."""

from __future__ import annotations

import hmac
from collections.abc import Callable, MutableMapping
from dataclasses import replace
from typing import Any

import structlog

from picometer.alert import Alert, Kind
from picometer.asgi import Receive
from picometer.cache.key import call_key
from picometer.clock import Clock
from picometer.config import Config, ProviderConfig
from picometer.duration import seconds_until
from picometer.gateway import refusals
from picometer.gateway.body import ClientGone, is_streaming, parse_json_object, read_body, written_again
from picometer.gateway.bounds import (
    OutOfBounds,
    check_body,
    check_model,
    check_names,
)
from picometer.gateway.fingerprint import Fingerprint
from picometer.gateway.forms import form_fields
from picometer.gateway.origin import local_host, origin_allowed
from picometer.gateway.path import InvalidPath, Route, Routes
from picometer.gateway.refusals import NO_RETRY, Refusal
from picometer.gateway.rules import Call, Rules
from picometer.gateway.settle import Admitted, Facts
from picometer.gateway.stand_ins import StandIns
from picometer.gateway.tags import Keyring, Tags, presented_key, resolve_tags
from picometer.metering.budget import Budget, Hold, Refused, refusal_message, to_pico
from picometer.metering.endpoints import Endpoint
from picometer.metering.fees import limit_tool_uses
from picometer.metering.limits import OverCap, apply_cap
from picometer.metering.media import media_reservation
from picometer.metering.pricing import Pricer
from picometer.store.state import State

log = structlog.get_logger("picometer.gateway")


CANARY_HEADER = "x-picometer-canary"  # a per-process secret: only picometer's own probes are marked canary
_UNPRICED_WARNED_LIMIT = 1000


class Turned(Exception):
    """Admission refused the request; `facts` is what it had learnt by then (for the record)."""

    def __init__(self, refusal: Refusal, facts: Facts, shape: str | None, provider_kind: str | None) -> None:
        super().__init__(refusal.message)
        self.refusal, self.facts, self.shape, self.provider_kind = refusal, facts, shape, provider_kind


class _Draft:
    """What admission has learnt so far; frozen into Facts once, when it is done (either way)."""

    __slots__ = ("base", "endpoint", "fingerprint", "known", "provider", "route")

    def __init__(self, base: Facts) -> None:
        self.base = base
        self.known: dict[str, Any] = {}
        self.route: Route | None = None
        self.provider: ProviderConfig | None = None
        self.endpoint: Endpoint | None = None
        self.fingerprint: Fingerprint | None = None

    def learn(self, **facts: Any) -> None:
        self.known.update(facts)

    @property
    def tags(self) -> Tags:
        tags: Tags = self.known["tags"]
        return tags

    def facts(self) -> Facts:
        base = self.base  # only its arrival is set (Proxy): the rest is what admission learnt
        return Facts(base.request_id, base.started, base.t0, **self.known) if self.known else base

    def refused_facts(self) -> Facts:
        """The facts of a refused call, its prompt fingerprinted now: no provider will be waited for."""
        if self.fingerprint is not None:
            fp = self.fingerprint.take()
            self.learn(prompt_hash=fp.prompt_hash, conversation=fp.conversation, prompt=fp.prompt)
        return self.facts()


class Admission:
    def __init__(
        self,
        config: Config,
        *,
        clock: Clock,
        pricer: Pricer,
        budget: Budget,
        state: State,
        alert: Callable[[Alert], None] | None = None,
        canary_token: str | None = None,
    ) -> None:
        self.config = config
        self.keyring, self.rules = Keyring(config), Rules(config)
        self.clock, self.pricer, self.budget, self.state = clock, pricer, budget, state
        self.stand_ins = StandIns(config, pricer, clock)
        self._alert = alert
        self._canary_token = canary_token.encode() if canary_token else None
        self._unpriced_warned: set[tuple[str, str]] = set()
        self.body_bytes_held = 0  # request bodies in memory now, read or being read: bounded by the config
        self.routes = Routes(config)

    def reconfigure(self, config: Config) -> None:
        self.config, self.keyring, self.rules = config, Keyring(config), Rules(config)
        self.routes = Routes(config)  # the default provider may have changed
        self.stand_ins = StandIns(config, self.pricer, self.clock)

    async def admit(
        self, facts: Facts, scope: MutableMapping[str, Any], receive: Receive, headers: dict[str, str]
    ) -> Admitted:
        """The admitted request, or Turned carrying the refusal and what was known."""
        draft = _Draft(facts)
        try:
            admitted = await self._admit(draft, scope, receive, headers)
            self.body_bytes_held += len(admitted.content)  # given back by release() when the call ends
            return admitted
        except Refusal as r:
            shape = draft.endpoint.shape if draft.endpoint else None
            raise Turned(r, draft.refused_facts(), shape, draft.provider.kind if draft.provider else None) from None
        except ClientGone:
            raise ClientGone(draft.facts()) from None

    async def _admit(
        self, d: _Draft, scope: MutableMapping[str, Any], receive: Receive, headers: dict[str, str]
    ) -> Admitted:
        cfg = self.config
        method = scope["method"]
        try:
            route, endpoint = self.routes.find(scope.get("raw_path") or scope["path"].encode(), method)
        except InvalidPath as e:
            d.learn(tags=resolve_tags(headers, None, None, cfg))
            raise refusals.invalid_path(str(e)) from None
        if route is None:
            d.learn(tags=resolve_tags(headers, None, None, cfg))
            raise Refusal(
                404, "not_found", "no such route: use /{provider}/..., /w/{workflow}/{provider}/... or /v1/..."
            )
        d.route = route
        try:
            check_names(headers, route.workflow)
        except OutOfBounds as e:
            d.learn(tags=resolve_tags(headers, None, None, cfg))
            raise Refusal(400, "invalid_request_error", str(e)) from None
        provider = cfg.providers.get(route.provider)
        if provider is None:
            d.learn(provider=route.provider, tags=resolve_tags(headers, route.workflow, None, cfg))
            known = ", ".join(sorted(cfg.providers))
            raise Refusal(404, "unknown_provider", f"no provider named {route.provider!r}; configured: {known}")
        d.provider = provider
        d.endpoint = endpoint
        query = scope.get("query_string", b"")
        presented = presented_key(headers, query)
        key = self.keyring.match(presented)
        tags = resolve_tags(headers, route.workflow, key, cfg)
        canary = self._is_canary(headers)
        d.learn(provider=route.provider, endpoint=endpoint.name, tags=tags, canary=canary)
        if self.keyring.required and key is None and not canary:
            raise Refusal(401, "invalid_api_key", "a picometer client key is required: send it as the API key")
        origin, host = headers.get("origin"), headers.get("host")  # a browser's page: see gateway/origin.py
        if key is None and not canary and not (origin_allowed(origin, cfg.server.allowed_origins) and local_host(host)):
            raise refusals.origin_not_allowed(origin, host)
        provider_key = cfg.provider_key(route.provider)
        if key is not None and provider_key is None:
            raise Refusal(
                401,
                "invalid_api_key",
                f"a picometer key was sent, but provider {route.provider!r} has no api_key to use instead; "
                f"set [providers.{route.provider}].api_key",
            )

        declared = headers.get("content-length", "")
        expected = int(declared) if declared.isdigit() and int(declared) <= cfg.server.max_body_bytes else 0
        limit = cfg.server.max_body_bytes_in_flight
        if self.body_bytes_held + expected > limit:
            raise Refusal(
                503,
                "overloaded",
                f"picometer holds {limit} bytes of request bodies already ([server].max_body_bytes_in_flight); "
                "try again in a second",
                [(b"retry-after", b"1")],
            )
        self.body_bytes_held += expected  # kept for this body while it arrives
        try:
            content = await read_body(receive, cfg.server.max_body_bytes, headers)
        finally:
            self.body_bytes_held -= expected
        if content is None:
            raise Refusal(
                413,
                "invalid_request_error",
                f"request body is larger than {cfg.server.max_body_bytes} bytes ([server].max_body_bytes)",
            )
        body: dict[str, Any] | None = None
        fields: dict[str, Any] = {}
        if endpoint.body == "json":
            body = fields = parse_json_object(content)
        elif endpoint.body == "multipart":
            fields = form_fields(content, headers.get("content-type", ""))
        try:
            check_body(fields, endpoint) if body is not None else check_model(fields.get("model"))
            if endpoint.deployment is not None or endpoint.model is not None:  # names from the path
                check_model(endpoint.deployment)
                check_model(endpoint.model)
        except OutOfBounds as e:
            raise Refusal(400, "invalid_request_error", str(e)) from None
        # Gemini names the model in the path; an Azure deployment is priced by its name until the answer names one.
        model = endpoint.model or fields.get("model") or endpoint.deployment
        stream = is_streaming(endpoint, fields)
        d.learn(model=model, stream=stream)
        # Before every policy: a workflow a rule gives the call brings its pause, caps and policies with it.
        rule = self.rules.match(Call(route.rest, model, headers, body, endpoint.shape)) if self.rules.rules else None
        if rule is not None:
            d.learn(tags=(tags := rule.tag(tags, headers, cfg)))
            if rule.block:
                raise refusals.blocked_by_rule(rule.described())
        started = d.base.started
        pause = self.state.paused(tags.workflow, started)
        if pause is not None:
            raise refusals.paused(pause, started)
        if endpoint.unmetered and self._unmetered_blocked(tags.workflow, provider):
            where = self._policy_table(tags.workflow, "unmetered")
            raise refusals.unmetered(route.rest, method, route.provider, where)
        if not endpoint.metered:
            return Admitted(d.facts(), route, provider, endpoint, content, body, provider_key, False, None)
        if endpoint.flat:
            flat = 0.0 if provider.free else media_reservation(endpoint.name, model, fields, len(content))
            hold = self._reserve(d, to_pico(flat))
            return Admitted(
                d.facts(), route, provider, endpoint, content, body, provider_key, False, hold, flat, fields
            )
        assert body is not None and endpoint.shape is not None
        self._check_model(d, provider, route.provider, model)
        store = cfg.storage.store_prompts
        if store != "none":
            d.fingerprint = Fingerprint(body, model, store == "redacted")
        # Taken before the body is changed below: the key is of the request as the client sent it.
        key_of_answer = call_key(
            cfg.cache, route.provider, endpoint, model, tags.workflow, stream, body, headers, query, presented
        )
        changed = self._cap_tokens(d, body, provider)
        hide = spliced = False
        # OpenAI-shaped streams report usage only when asked: ask, and hide the extra chunk from the client.
        if stream and endpoint.name in ("chat/completions", "completions"):
            options = body.get("stream_options")
            if not (isinstance(options, dict) and options.get("include_usage") is True):
                spliced = "stream_options" not in body  # a new key alone is written into the client's bytes
                body["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
                hide, changed = True, changed or not spliced
        # A free provider's paid fallbacks may answer: then the call is guarded like any paid one.
        guarded = bool(model) and (not provider.free or bool(provider.fallback)) and self.budget.guards(tags.workflow)
        # Per-use tool fees need a limit for the worst case to be one: set ours where the request has none.
        if guarded and limit_tool_uses(endpoint.shape, endpoint.name, body):
            changed = True
        if changed or spliced:
            content = written_again(body, content, usage_asked_only=not changed)

        def admitted(hold: Hold | None) -> Admitted:  # facts taken last: a cap the hold runs past is among them
            key, fp = key_of_answer, d.fingerprint
            return Admitted(
                d.facts(),
                route,
                provider,
                endpoint,
                content,
                body,
                provider_key,
                hide,
                hold,
                cache_key=key,
                fingerprint=fp,
            )

        if not guarded:
            hold = self._reserve(d, 0)
        else:
            asked = admitted(None)
            worst = self.stand_ins.worst(asked)
            held = self.budget.reserve(tags.workflow, worst, started, may_downgrade=True)
            if isinstance(held, Refused) and held.cap.downgrade_to:
                cheaper = self._downgrade(d, asked, held)
                if cheaper is not None:
                    return cheaper
                held = self.budget.reserve(tags.workflow, worst, started)  # refused again, and now announced
            hold = self._held(d, held)
        return admitted(hold)

    def _downgrade(self, d: _Draft, asked: Admitted, refused: Refused) -> Admitted | None:
        """The call at the cap's downgrade model, held against the budgets, when that fits; None otherwise."""
        assert refused.cap.downgrade_to is not None
        cheaper = next(iter(self.stand_ins.of(asked, (refused.cap.downgrade_to,))), None)
        if cheaper is None or cheaper.facts.model == asked.facts.model:
            return None
        held = self.budget.reserve(d.tags.workflow, self.stand_ins.worst(cheaper), asked.facts.started)
        if isinstance(held, Refused):
            return None
        self.budget.downgraded(refused, asked.facts.started)
        origin = f"{asked.route.provider}/{asked.facts.model}"
        over = held.over.name if held.over is not None else cheaper.facts.budget  # an alert-only cap it runs past
        return replace(cheaper, facts=replace(cheaper.facts, downgraded_from=origin, budget=over), hold=held)

    def release(self, admitted: Admitted) -> None:
        """The call has ended: its body is no longer held."""
        self.body_bytes_held -= len(admitted.content)

    def _is_canary(self, headers: dict[str, str]) -> bool:
        given = headers.get(CANARY_HEADER)
        if given is None or self._canary_token is None:
            return False
        return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), self._canary_token)

    def _policy_table(self, workflow: str, key: str) -> str:
        w = self.config.workflows.get(workflow)
        return f"[workflows.{workflow}]" if w is not None and getattr(w, key) is not None else "[budgets]"

    def _unmetered_blocked(self, workflow: str, provider: ProviderConfig) -> bool:
        """A call picometer cannot meter is refused while a dollar cap applies, unless allowed (or free)."""
        if provider.free:
            return False
        w = self.config.workflows.get(workflow)
        policy = (w.unmetered if w else None) or self.config.budgets.unmetered
        return policy == "block" and self.budget.capped(workflow)

    def _check_model(self, d: _Draft, provider: ProviderConfig, provider_name: str, model: str | None) -> None:
        if not model and not provider.free:
            raise Refusal(400, "invalid_request_error", "the request has no 'model': say which model to call")
        if model and not self.pricer.is_priced(provider, model, d.base.started):
            workflow = self.config.workflows.get(d.tags.workflow)
            policy = (workflow.unpriced if workflow else None) or self.config.budgets.unpriced
            if policy == "block":
                raise refusals.unpriced(model, provider_name)
            self._warn_unpriced(provider_name, model)

    def _cap_tokens(self, d: _Draft, body: dict[str, Any], provider: ProviderConfig) -> bool:
        """Apply max_tokens_per_request (the tighter of global and workflow); True when the body changed."""
        assert d.endpoint is not None and d.endpoint.shape is not None
        workflow = d.tags.workflow
        g = self.config.budgets
        w = self.config.workflows.get(workflow)
        caps: list[tuple[int, str]] = []
        if g.max_tokens_per_request:
            caps.append((g.max_tokens_per_request, "[budgets]"))
        if w is not None and w.max_tokens_per_request:
            caps.append((w.max_tokens_per_request, f"[workflows.{workflow}]"))
        if not caps:
            return False
        cap, where = min(caps)
        over_cap = (w.over_cap if w is not None else None) or g.over_cap
        try:
            return apply_cap(body, d.endpoint.shape, d.endpoint.name, provider.base_url, cap, over_cap)
        except OverCap as e:
            raise refusals.over_cap(e, where) from None

    def _reserve(self, d: _Draft, worst: int) -> Hold:
        """Hold the call's worst-case cost against every cap that applies, or refuse it."""
        return self._held(d, self.budget.reserve(d.tags.workflow, worst, d.base.started))

    def _held(self, d: _Draft, held: Hold | Refused) -> Hold:
        """The hold, or the refusal in the client's words."""
        started = d.base.started
        if isinstance(held, Refused):
            d.learn(budget=held.cap.name)
            wait = seconds_until(held.resets_at, started)
            raise Refusal(
                429,
                "budget_exceeded",
                refusal_message(held, started, self.budget.zone),
                [(b"retry-after", str(wait).encode()), NO_RETRY],
            )
        if held.over is not None:
            d.learn(budget=held.over.name)
        return held

    def _warn_unpriced(self, provider: str, model: str) -> None:
        if (provider, model) not in self._unpriced_warned and len(self._unpriced_warned) < _UNPRICED_WARNED_LIMIT:
            self._unpriced_warned.add((provider, model))
            log.warning("unpriced model allowed; its cost is recorded as null", provider=provider, model=model)
            if self._alert is not None:
                message = (
                    f"Model {model!r} on provider {provider!r} has no known price: its calls go through "
                    '(unpriced = "allow") but cost nothing in the budgets and reports. Add '
                    f'[prices."{model}"] with input = and output = (dollars per 1M tokens) to the config.'
                )
                self._alert(Alert(Kind.UNPRICED_MODEL, f"unpriced_model:{provider}:{model}", message, self.clock.now()))
