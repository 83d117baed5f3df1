"""The HTTP edge: routes, refusals, forwarding with relay, and one record per request."""

from __future__ import annotations

import asyncio
import hmac
import json
import math
import os
import random
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, unquote

import httpx
import structlog

from picometer import __version__
from picometer.alert import Alert, Kind
from picometer.clock import Clock
from picometer.config import Config, ProviderConfig, Secret, is_loopback
from picometer.duration import format_duration, parse_duration, seconds_until
from picometer.gateway import forward, retry
from picometer.gateway.errors import error_body, kind_for_refusal
from picometer.gateway.tags import Keyring, Tags, clean_tag, presented_key, resolve_tags
from picometer.metering.budget import Budget, Hold, Refused, refusal_message, to_pico
from picometer.metering.limits import OverCap, apply_cap, worst_usage
from picometer.metering.pricing import Pricer
from picometer.metering.sse import SSEParser
from picometer.metering.usage import (
    UNMETERED_JSON_ENDPOINTS,
    StreamMeter,
    Usage,
    endpoint_of,
    estimate_tokens,
    from_response,
    is_metered,
    request_text_chars,
)
from picometer.record import Record, Recorder, prompt_hash, redacted_prompt, rfc3339_ms
from picometer.store.state import Pause, State

log = structlog.get_logger("picometer.gateway")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON = (b"content-type", b"application/json")
NO_RETRY = (b"x-should-retry", b"false")  # the official SDKs would otherwise retry a refusal that cannot pass
CONTROL_BODY_LIMIT = 65_536
_UNPRICED_WARNED_LIMIT = 1000
CANARY_HEADER = "x-picometer-canary"  # a per-process secret: only picometer's own probes are marked canary


class ClientGone(Exception):
    """The client hung up before we could answer."""


class Refusal(Exception):
    """An answer picometer gives itself. Raised only before the first byte of a response is sent."""

    def __init__(self, status: int, code: str, message: str, headers: list[tuple[bytes, bytes]] | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or []


@dataclass(frozen=True, slots=True)
class Route:
    provider: str
    rest: str  # path below the provider's base URL, still percent-encoded
    workflow: str | None


def parse_route(path: str, raw_path: bytes, default_provider: str, default_base_url: str) -> Route | None:
    """/{provider}/{rest}, /w/{workflow}/{provider}/{rest}, /v1/{rest} (default provider)."""
    parts = path.split("/")[1:]
    raw_parts = raw_path.decode("latin-1").split("/")[1:]
    if len(raw_parts) != len(parts):  # an encoded "/" inside a segment: route on the raw form
        parts = [unquote(p) for p in raw_parts]
    if not parts or not parts[0]:
        return None
    if parts[0] == "w":
        if len(parts) < 3 or not parts[1] or not parts[2]:
            return None
        return Route(parts[2], "/".join(raw_parts[3:]), parts[1])
    if parts[0] == "v1":
        # Bare /v1/...: a base URL that already ends in /v1 must not get a second one.
        rest = "/".join(raw_parts[1:]) if default_base_url.rstrip("/").endswith("/v1") else "/".join(raw_parts)
        return Route(default_provider, rest, None)
    return Route(parts[0], "/".join(raw_parts[1:]), None)


def header_map(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in raw:
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            text = value.decode("latin-1")
        out[name.decode("latin-1").lower()] = text
    return out


def format_cost(cost: float | None) -> str:
    return "unknown" if cost is None else f"{cost:.10f}".rstrip("0").rstrip(".") or "0"


@dataclass
class Exchange:
    """Everything known about one request while it is in flight."""

    record: Record
    t0: float
    started: datetime  # wall time the request arrived: the record's ts and the budget period it counts in
    kind: str = "openai"
    provider: ProviderConfig | None = None
    body: dict[str, Any] | None = None
    metered: bool = False
    upstream_reached: bool = False
    upstream_status: int = 0  # what the provider answered; the record's http_status is what the client got
    usage: Usage | None = None
    text_chars: int = 0
    tags: Tags | None = None
    route: Route | None = None
    provider_key: Secret | None = None
    raw_body: bytes = b""
    hide_usage_chunk: bool = False  # we asked for stream usage: the client must not see that chunk
    hold: Hold | None = None  # the budget reservation, settled when the call is recorded
    forwarding: bool = False  # past every check: what happens now is the provider's doing
    started_reply: bool = False  # the response status went to the client: no retry, no refusal now
    done: bool = False  # the client received the whole response
    recorded: bool = False


@dataclass
class Stats:
    requests: int = 0
    cost_usd: float = 0.0
    by_status: dict[str, int] = field(default_factory=lambda: {"ok": 0, "error": 0, "blocked": 0})


class Gateway:
    """The ASGI application: one instance per daemon."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Clock,
        pricer: Pricer,
        recorder: Recorder,
        budget: Budget,
        state: State,
        transport: httpx.AsyncBaseTransport | None = None,
        status_extra: Callable[[], dict[str, Any]] | None = None,
        alert: Callable[[Alert], None] | None = None,
        rand: Callable[[], float] = random.random,
        canary_token: str | None = None,
        run_canary: Callable[[], Awaitable[dict[str, Any]]] | None = None,
        metrics: Callable[[], tuple[bytes, str]] | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.pricer = pricer
        self.recorder = recorder
        self.budget = budget
        self.state = state
        self.keyring = Keyring(config)
        self._transport = transport
        self._owns_transport = transport is None
        self.stats = Stats()
        self._status_extra = status_extra
        self._alert = alert
        self._rand = rand  # backoff jitter; tests pass their own
        self._canary_token = canary_token.encode() if canary_token else None  # marks picometer's own probes
        self._run_canary = run_canary
        self._metrics = metrics
        self._health: dict[str, retry.Health] = {}  # per provider: retry budget, circuit, retry counts
        self.started_at = clock.now()
        self.ready = False
        self._unpriced_warned: set[tuple[str, str]] = set()
        self.in_flight = 0

    def reconfigure(self, config: Config, pricer: Pricer) -> None:
        """A reloaded config: calls that start from now on use it; calls in flight finish under the old one."""
        self.config = config
        self.pricer = pricer
        self.keyring = Keyring(config)
        r = config.retry
        for health in self._health.values():
            health.budget.ratio = r.budget_ratio
            health.circuit.failures, health.circuit.open_s = r.circuit_failures, r.circuit_open_s

    @property
    def transport(self) -> httpx.AsyncBaseTransport:
        if self._transport is None:
            self._transport = forward.new_transport()
        return self._transport

    async def aclose(self) -> None:
        if self._transport is not None and self._owns_transport:
            await self._transport.aclose()
            self._transport = None

    # ------------------------------------------------------------ ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            path: str = scope["path"]
            if path.startswith("/-/") or path == "/metrics":
                await self._admin(scope, receive, send)
            else:
                self.in_flight += 1
                try:
                    await self._proxy(scope, receive, send)
                finally:
                    self.in_flight -= 1

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.ready = True
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.ready = False
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # ------------------------------------------------------------ admin

    async def _admin(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        if path == "/-/health":
            status = 200 if self.ready else 503
            await _respond(send, status, json.dumps({"status": "ok" if self.ready else "starting"}).encode())
        elif path == "/-/status":
            await _respond(send, 200, json.dumps(self.status(), ensure_ascii=False).encode())
        elif path == "/metrics" and self._metrics is not None:
            try:
                self._authorize_control(scope, header_map(scope["headers"]))
            except Refusal as r:
                await _respond(send, r.status, error_body("openai", r.code, r.message))
                return
            body, content_type = self._metrics()
            await _respond(send, 200, body, content_type=content_type.encode())
        elif path.startswith(("/-/pause/", "/-/resume/")) or path == "/-/canary":
            try:
                answer = await (self._canary(scope) if path == "/-/canary" else self._control(scope, receive))
            except ClientGone:
                return
            except Refusal as r:
                await _respond(send, r.status, error_body("openai", r.code, r.message))
            else:
                await _respond(send, 200, json.dumps(answer, ensure_ascii=False).encode())
        else:
            await _respond(send, 404, error_body("openai", "not_found", f"no admin route {path}"))

    async def _canary(self, scope: Scope) -> dict[str, Any]:
        """POST /-/canary: run every probe now and answer with the results (what `picometer canary` shows)."""
        if scope["method"] != "POST":
            raise Refusal(405, "invalid_request_error", "use POST for /-/canary")
        self._authorize_control(scope, header_map(scope["headers"]))
        if self._run_canary is None:
            raise Refusal(404, "not_found", "this picometer runs no canary")
        return await self._run_canary()

    async def _control(self, scope: Scope, receive: Receive) -> dict[str, Any]:
        """POST /-/pause/{workflow} (optional "for": "2h" as query or JSON) and POST /-/resume/{workflow}."""
        if scope["method"] != "POST":
            raise Refusal(405, "invalid_request_error", "use POST for /-/pause/{workflow} and /-/resume/{workflow}")
        headers = header_map(scope["headers"])
        self._authorize_control(scope, headers)
        action, _, raw_name = scope["path"][3:].partition("/")
        workflow = clean_tag(raw_name)
        if not workflow:
            raise Refusal(400, "invalid_request_error", f"name a workflow: POST /-/{action}/WORKFLOW")
        now = self.clock.now()
        if action == "resume":
            was = self.state.resume(workflow)
            log.info("workflow resumed", workflow=workflow, was_paused=was)
            return {"workflow": workflow, "paused": False, "was_paused": was}
        body = await _read_body(receive, CONTROL_BODY_LIMIT, headers)
        if body is None:
            raise Refusal(413, "invalid_request_error", f"a control request body is at most {CONTROL_BODY_LIMIT} bytes")
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        wanted = (query.get("for") or [None])[0]
        if body.strip():
            options = _parse_json_object(body)
            wanted = options.get("for", wanted)
        until = None
        if wanted:
            try:
                until = now + parse_duration(str(wanted))
            except ValueError as e:
                raise Refusal(400, "invalid_request_error", str(e)) from None
        pause = self.state.pause(workflow, until, clean_tag(headers.get("x-picometer-by")) or "http", now)
        log.warning("workflow paused", workflow=workflow, until=_when(pause.until), by=pause.by)
        return {"workflow": workflow, "paused": True, "until": _when(pause.until), "by": pause.by}

    def _authorize_control(self, scope: Scope, headers: dict[str, str]) -> None:
        token = self.config.secrets.get("server.admin_token")
        if token is not None:
            given = presented_key(headers) or headers.get("x-picometer-admin-token") or ""
            if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), token.value.encode()):
                raise Refusal(401, "invalid_api_key", "this control route needs [server].admin_token as a Bearer token")
            return
        client = scope.get("client") or ("", 0)
        if not is_loopback(client[0]):
            raise Refusal(
                403,
                "permission_denied",
                "control routes without [server].admin_token answer only on loopback; set admin_token to allow this",
            )

    def status(self) -> dict[str, Any]:
        return {
            "version": __version__,
            "started_at": rfc3339_ms(self.started_at),
            "uptime_s": round((self.clock.now() - self.started_at).total_seconds(), 1),
            "listen": self.config.server.listen,
            "providers": {name: {"kind": p.kind, "base_url": p.base_url} for name, p in self.config.providers.items()},
            "requests": self.stats.requests,
            "requests_by_status": dict(self.stats.by_status),
            "in_flight": self.in_flight,
            "cost_usd_since_start": round(self.stats.cost_usd, 6),
            "upstream": {name: h.status(self.clock.monotonic()) for name, h in sorted(self._health.items())},
            **(self._status_extra() if self._status_extra else {}),
        }

    # ------------------------------------------------------------ proxy

    async def _proxy(self, scope: Scope, receive: Receive, send: Send) -> None:
        now = self.clock.now()
        request_id = os.urandom(8).hex()
        ex = Exchange(Record(ts=rfc3339_ms(now), request_id=request_id), t0=self.clock.monotonic(), started=now)
        headers = header_map(scope["headers"])
        try:
            await self._prepare(ex, scope, receive, headers)
            await self._forward_guarded(ex, scope, receive, send)
        except Refusal as r:
            # Refused before forwarding: blocked. Failed after forwarding (timeout, garbage): an error.
            ex.record.status = "error" if ex.forwarding else "blocked"
            ex.record.http_status = r.status
            ex.record.error_type = ex.record.error_type or r.code
            kind = kind_for_refusal(ex.provider.kind if ex.provider else None, headers, scope["path"])
            self._record(ex)
            await _respond(send, r.status, error_body(kind, r.code, r.message), request_id, r.headers)
        except ClientGone:
            ex.record.error_type = "client_disconnected"
        finally:
            self._record(ex)

    async def _prepare(self, ex: Exchange, scope: Scope, receive: Receive, headers: dict[str, str]) -> None:
        """Route, read, authenticate, tag and check the request; raise Refusal to answer it ourselves."""
        cfg = self.config
        default = cfg.providers.get(cfg.server.default_provider)
        route = parse_route(
            scope["path"],
            scope.get("raw_path") or scope["path"].encode(),
            cfg.server.default_provider,
            default.base_url if default else "",
        )
        if route is None:
            ex.tags = resolve_tags(headers, None, None, cfg)
            raise Refusal(
                404,
                "not_found",
                "no such route: use /{provider}/..., /w/{workflow}/{provider}/... or /v1/...",
            )
        ex.record.provider = route.provider
        provider = cfg.providers.get(route.provider)
        if provider is None:
            ex.tags = resolve_tags(headers, route.workflow, None, cfg)
            known = ", ".join(sorted(cfg.providers))
            raise Refusal(404, "unknown_provider", f"no provider named {route.provider!r}; configured: {known}")
        ex.provider, ex.kind = provider, provider.kind
        ex.route = route

        key = self.keyring.match(presented_key(headers))
        ex.tags = resolve_tags(headers, route.workflow, key, cfg)
        ex.record.canary = self._is_canary(headers)
        if self.keyring.required and key is None and not ex.record.canary:
            raise Refusal(401, "invalid_api_key", "a picometer client key is required: send it as the API key")
        provider_key = cfg.provider_key(route.provider)
        if key is not None and provider_key is None:
            raise Refusal(
                401,
                "invalid_api_key",
                f"a picometer key was sent, but provider {route.provider!r} has no api_key to use instead; "
                f"set [providers.{route.provider}].api_key",
            )
        ex.provider_key = provider_key

        body = await _read_body(receive, cfg.server.max_body_bytes, headers)
        if body is None:
            raise Refusal(
                413,
                "invalid_request_error",
                f"request body is larger than {cfg.server.max_body_bytes} bytes ([server].max_body_bytes)",
            )
        ex.raw_body = body
        endpoint = endpoint_of(provider.kind, route.rest.split("?")[0])
        ex.record.endpoint = endpoint
        method = scope["method"]
        ex.metered = method == "POST" and is_metered(provider.kind, endpoint)
        if ex.metered or (method == "POST" and endpoint in UNMETERED_JSON_ENDPOINTS):
            ex.body = _parse_json_object(body)
            model = ex.body.get("model")
            if model is not None and not isinstance(model, str):
                raise Refusal(400, "invalid_request_error", "'model' must be a string")
            ex.record.model = model
            ex.record.stream = ex.body.get("stream") is True
        pause = self.state.paused(ex.tags.workflow, ex.started)
        if pause is not None:
            raise _paused(pause, ex.started)
        if ex.metered:
            assert ex.body is not None
            self._check_metered(ex, provider, route.provider)

    def _is_canary(self, headers: dict[str, str]) -> bool:
        given = headers.get(CANARY_HEADER)
        if given is None or self._canary_token is None:
            return False
        return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), self._canary_token)

    def _check_metered(self, ex: Exchange, provider: ProviderConfig, provider_name: str) -> None:
        body = ex.body
        assert body is not None and ex.tags is not None
        model = ex.record.model
        if not model and not provider.free:
            raise Refusal(400, "invalid_request_error", "the request has no 'model': say which model to call")
        if model and not self.pricer.is_priced(provider, model, self.clock.now()):
            workflow = self.config.workflows.get(ex.tags.workflow)
            policy = (workflow.unpriced if workflow else None) or self.config.budgets.unpriced
            if policy == "block":
                raise Refusal(
                    400,
                    "unpriced_model",
                    f"picometer has no price for model {model!r} on provider {provider_name!r}, so it cannot keep "
                    f'your budget. Add [prices."{model}"] with input = and output = (dollars per 1M tokens) to the '
                    'config, or set [budgets].unpriced = "allow"',
                )
            self._warn_unpriced(provider_name, model)
        store = self.config.storage.store_prompts
        if store != "none":
            ex.record.prompt_hash = prompt_hash(body)
        if store == "redacted":
            ex.record.prompt = redacted_prompt(body)
        changed = self._cap_tokens(ex, provider)
        # OpenAI-kind streams report usage only when asked: ask, and hide the extra chunk from the client.
        if provider.kind == "openai" and ex.record.stream and ex.record.endpoint in ("chat/completions", "completions"):
            options = body.get("stream_options")
            if not (isinstance(options, dict) and options.get("include_usage") is True):
                body["stream_options"] = {
                    **(options if isinstance(options, dict) else {}),
                    "include_usage": True,
                }
                ex.hide_usage_chunk = changed = True
        if changed:
            ex.raw_body = json.dumps(body, ensure_ascii=False).encode()
        self._reserve(ex, provider)

    def _cap_tokens(self, ex: Exchange, provider: ProviderConfig) -> bool:
        """Apply max_tokens_per_request (the tighter of global and workflow); True when the body changed."""
        assert ex.body is not None and ex.tags is not None
        g = self.config.budgets
        w = self.config.workflows.get(ex.tags.workflow)
        caps: list[tuple[int, str]] = []
        if g.max_tokens_per_request:
            caps.append((g.max_tokens_per_request, "[budgets]"))
        if w is not None and w.max_tokens_per_request:
            caps.append((w.max_tokens_per_request, f"[workflows.{ex.tags.workflow}]"))
        if not caps:
            return False
        cap, where = min(caps)
        over_cap = (w.over_cap if w is not None else None) or g.over_cap
        try:
            return apply_cap(ex.body, provider.kind, ex.record.endpoint, provider.base_url, cap, over_cap)
        except OverCap as e:
            raise Refusal(
                400,
                "max_tokens_over_cap",
                f"{e.field} = {e.requested} is above the cap of {e.cap} output tokens per request "
                f'({where}.max_tokens_per_request); ask for at most {e.cap}, or set over_cap = "clamp"',
            ) from None

    def _reserve(self, ex: Exchange, provider: ProviderConfig) -> None:
        """Hold the call's worst-case cost against every cap that applies, or refuse it."""
        assert ex.body is not None and ex.tags is not None
        workflow, model = ex.tags.workflow, ex.record.model
        worst = 0
        if model and not provider.free and self.budget.guards(workflow):
            usage = worst_usage(ex.body, provider.kind, ex.record.endpoint)
            worst = to_pico(self.pricer.worst_cost(provider, model, usage, ex.started) or 0.0)
        held = self.budget.reserve(workflow, worst, ex.started)
        if isinstance(held, Refused):
            ex.record.budget = held.cap.name
            wait = seconds_until(held.resets_at, ex.started)
            raise Refusal(
                429,
                "budget_exceeded",
                refusal_message(held, ex.started, self.budget.zone),
                [(b"retry-after", str(wait).encode()), NO_RETRY],
            )
        ex.hold = held
        if held.over is not None:
            ex.record.budget = held.over.name

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

    async def _forward_guarded(self, ex: Exchange, scope: Scope, receive: Receive, send: Send) -> None:
        """Forward while watching the client: if it hangs up first, the upstream call is cancelled too."""
        task = asyncio.current_task()
        assert task is not None
        hung_up = False

        def on_disconnect(watcher: asyncio.Future[None]) -> None:
            nonlocal hung_up
            # After a complete response the server reports a disconnect too: that one is no hang-up.
            if not watcher.cancelled() and not ex.done:
                hung_up = True
                task.cancel()

        watcher = asyncio.ensure_future(_wait_disconnect(receive))
        watcher.add_done_callback(on_disconnect)
        try:
            await self._forward(ex, scope, send)
        except asyncio.CancelledError:
            if not hung_up:
                raise
            task.uncancel()
            raise ClientGone from None
        finally:
            watcher.remove_done_callback(on_disconnect)
            watcher.cancel()

    def retries(self) -> dict[str, dict[str, int]]:
        """Retries by cause, per provider called so far (reading them creates no entry for the others)."""
        return {name: dict(h.retries) for name, h in self._health.items()}

    def health(self, provider: str) -> retry.Health:
        health = self._health.get(provider)
        if health is None:
            r = self.config.retry
            health = retry.Health(
                retry.RetryBudget(r.budget_ratio), retry.Circuit(r.circuit_failures, r.circuit_open_s)
            )
            self._health[provider] = health
        return health

    async def _forward(self, ex: Exchange, scope: Scope, send: Send) -> None:
        provider, route = ex.provider, ex.route
        assert provider is not None and route is not None
        ex.forwarding = True
        try:
            async with asyncio.timeout(provider.total_timeout_s):
                response = await self._call(ex, scope)
                try:
                    ex.record.http_status = ex.upstream_status = response.status_code
                    content_type = response.headers.get("content-type", "")
                    if "text/event-stream" in content_type:
                        await self._relay_stream(ex, response, send)
                    elif ex.metered:
                        await self._relay_json(ex, response, send, route.provider)
                    else:
                        await self._relay_raw(ex, response, send)
                finally:
                    await response.aclose()
        except TimeoutError:
            ex.record.error_type = "timeout"
            if ex.started_reply:
                return  # the client's reply is cut off, as the provider's would be
            raise Refusal(
                504,
                "upstream_timeout",
                f"provider {route.provider!r} did not finish within total_timeout_s = {provider.total_timeout_s:g} s",
            ) from None

    async def _call(self, ex: Exchange, scope: Scope) -> httpx.Response:
        """The provider's response, after retrying what is safe to retry; Refusal when there is none."""
        provider, route = ex.provider, ex.route
        assert provider is not None and route is not None
        name, cfg = route.provider, self.config.retry
        url = forward.upstream_url(provider.base_url, route.rest, scope.get("query_string", b""))
        headers = forward.upstream_headers(scope["headers"], provider, ex.provider_key)
        health = self.health(name)
        while True:
            wait = health.circuit.allow(self.clock.monotonic())
            if wait is not None:
                ex.record.error_type = ex.record.error_type or "circuit_open"
                raise Refusal(
                    503,
                    "upstream_unavailable",
                    f"provider {name!r} failed {health.circuit.consecutive} times in a row: picometer is not calling "
                    f"it for {math.ceil(wait)} s, then tries one call ([retry].circuit_open_s)",
                    [(b"retry-after", str(math.ceil(wait)).encode())],
                )
            ex.record.attempts += 1
            if ex.record.attempts == 1:
                health.budget.first_attempt(self.clock.monotonic())  # what the retry budget is a share of
            ex.upstream_reached = True
            timeouts = forward.timeouts_for(provider)
            # A bare Request skips the client's header/cookie/URL merging: we pass everything it needs.
            request = httpx.Request(
                scope["method"], url, headers=headers, content=ex.raw_body, extensions={"timeout": timeouts}
            )
            try:
                response, failure = await self._attempt(request, name, provider)
            except BaseException:
                health.circuit.release()  # cancelled (client gone, total timeout): neither success nor failure
                raise
            if failure is None:
                assert response is not None
                status = response.status_code
                if status >= 500:
                    health.circuit.failure(self.clock.monotonic())
                else:
                    health.circuit.success()
                # Earlier attempts failed; this answer decides. Upstream statuses are classified here only.
                ok = 200 <= status < 300
                ex.record.error_type = None if ok else retry.error_type_for_status(status, _error_body(response))
                timeouts["read"] = provider.timeout_s  # from here on: the longest silence between chunks
                return response
            ex.record.error_type = failure.reason
            ex.upstream_reached = failure.reached
            if failure.down:
                health.circuit.failure(self.clock.monotonic())
            else:
                health.circuit.success()
            hint = retry.wait_hint(response.headers, self.clock.now()) if response is not None else None
            delay = None
            if failure.retryable and ex.record.attempts < cfg.max_attempts:
                delay = retry.delay_before_retry(
                    ex.record.attempts, hint, cfg.base_delay_s, cfg.max_delay_s, self._rand
                )
            if delay is None or not health.budget.try_retry(self.clock.monotonic()):
                if response is not None:
                    return response  # the provider's own answer, after as many tries as were sensible
                tries = f" (after {ex.record.attempts} attempts)" if ex.record.attempts > 1 else ""
                raise Refusal(failure.status, failure.code, failure.message + tries)
            health.retries[failure.reason] = health.retries.get(failure.reason, 0) + 1
            log.info("retrying", provider=name, reason=failure.reason, attempt=ex.record.attempts, delay_s=delay)
            if response is not None:
                await response.aclose()
            await asyncio.sleep(delay)

    async def _attempt(
        self, request: httpx.Request, name: str, provider: ProviderConfig
    ) -> tuple[httpx.Response | None, _Failure | None]:
        """One call: (a response to pass on, None), (a retryable failure response, why) or (None, why)."""
        response = None
        try:
            async with asyncio.timeout(provider.first_byte_timeout_s):
                response = await self.transport.handle_async_request(request)
                if response.status_code in retry.RETRY_STATUSES:
                    await response.aread()  # a small error body: tells a quota from a rate limit
        except (TimeoutError, httpx.HTTPError) as e:
            if response is not None:
                await response.aclose()
            return None, _transport_failure(e, name, provider)
        status, body = response.status_code, _error_body(response)
        if not retry.is_retryable_status(status, body):
            return response, None
        reason = retry.error_type_for_status(status, body)
        return response, _Failure(reason, down=status >= 500 or status == 408, retryable=True, reached=True)

    def _start(self, ex: Exchange, response: httpx.Response, extra: list[tuple[bytes, bytes]]) -> Message:
        headers = forward.response_headers(response.headers)
        headers.append((b"x-picometer-request-id", ex.record.request_id.encode()))
        headers.extend(extra)
        ex.started_reply = True
        return {"type": "http.response.start", "status": response.status_code, "headers": headers}

    async def _relay_json(self, ex: Exchange, response: httpx.Response, send: Send, provider_name: str) -> None:
        try:
            content = await response.aread()
        except httpx.HTTPError as e:
            ex.record.error_type = "bad_response"
            raise Refusal(
                502,
                "upstream_bad_response",
                f"provider {provider_name!r} broke off its answer: {type(e).__name__}",
            ) from None
        ex.record.ttft_ms = self._elapsed_ms(ex)
        if response.is_success:
            try:
                parsed = json.loads(content)
            except ValueError:
                ex.record.error_type = "bad_response"
                ctype = response.headers.get("content-type", "?")
                raise Refusal(
                    502,
                    "upstream_bad_response",
                    f"provider {provider_name!r} answered {response.status_code} with a body that is not JSON "
                    f"({ctype}, {len(content)} bytes); check its base_url",
                ) from None
            ex.usage, ex.record.response_model = from_response(ex.kind, ex.record.endpoint, parsed)
        ex.done = True  # the whole answer is in hand and goes out in one piece
        self._record(ex)  # on disk before the client has the answer: a crash can lose a reply, never its record
        extra = [
            (b"content-length", str(len(content)).encode()),
            (b"x-picometer-cost-usd", format_cost(ex.record.cost_usd).encode()),
        ]
        await send(self._start(ex, response, extra))
        await send({"type": "http.response.body", "body": content, "more_body": False})

    async def _relay_raw(self, ex: Exchange, response: httpx.Response, send: Send) -> None:
        await send(self._start(ex, response, []))
        async for chunk in response.aiter_bytes():
            if ex.record.ttft_ms is None:
                ex.record.ttft_ms = self._elapsed_ms(ex)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        ex.done = True
        self._record(ex)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _relay_stream(self, ex: Exchange, response: httpx.Response, send: Send) -> None:
        """Relay each chunk as it arrives, reading usage from the events on the way."""
        parser = SSEParser()
        meter = StreamMeter(ex.kind, ex.record.endpoint)
        hide = ex.hide_usage_chunk and response.is_success
        await send(self._start(ex, response, []))
        try:
            async for chunk in response.aiter_bytes():
                if ex.record.ttft_ms is None:
                    ex.record.ttft_ms = self._elapsed_ms(ex)
                events = parser.feed(chunk)
                if hide:
                    out = b"".join(ev.raw for ev in events if not meter.observe(ev))
                    if out:
                        await send({"type": "http.response.body", "body": out, "more_body": True})
                else:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    for ev in events:
                        meter.observe(ev)
            tail = b""
            for ev in parser.close():
                if not meter.observe(ev) and hide:
                    tail += ev.raw
            if tail:
                await send({"type": "http.response.body", "body": tail, "more_body": True})
        except httpx.HTTPError as e:
            # The provider cut the stream: leave the client's unfinished too, so it sees a broken stream.
            ex.record.error_type = "timeout" if isinstance(e, httpx.TimeoutException) else "stream_interrupted"
            return
        finally:
            ex.usage, ex.text_chars = meter.usage, meter.text_chars
            if ex.record.response_model is None:
                ex.record.response_model = meter.model
        ex.done = True
        self._record(ex)  # the record is on disk before the final chunk tells the client it is complete
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    # ------------------------------------------------------------ settle and record

    def _elapsed_ms(self, ex: Exchange) -> float:
        return round((self.clock.monotonic() - ex.t0) * 1000, 1)

    def _settle(self, ex: Exchange) -> None:
        """Decide status, usage and cost (called once, by _record)."""
        rec, provider = ex.record, ex.provider
        upstream_failed = bool(ex.upstream_status) and not 200 <= ex.upstream_status < 300
        if rec.status != "blocked":
            if not ex.done and not rec.error_type:
                rec.error_type = "client_disconnected"
            rec.status = "error" if rec.error_type else "ok"
        usage = ex.usage
        if usage is not None:
            rec.usage_source = "provider"
        elif ex.metered and ex.upstream_reached and not upstream_failed:
            # The provider did (some) work but reported nothing: estimate, never assume zero.
            usage = Usage(
                input_tokens=estimate_tokens(request_text_chars(ex.body or {})),
                output_tokens=estimate_tokens(ex.text_chars),
            )
            rec.usage_source = "estimated"
        if usage is None or provider is None:
            rec.cost_usd = 0.0
            return
        rec.input_tokens = usage.input_tokens
        rec.cached_input_tokens = usage.cached_input_tokens
        rec.cache_write_tokens = usage.cache_write_tokens
        rec.output_tokens = usage.output_tokens
        rec.reasoning_tokens = usage.reasoning_tokens
        quote = self.pricer.cost(provider, (rec.response_model, rec.model), usage, self.clock.now())
        rec.cost_usd, rec.price_source = quote.cost_usd, quote.source

    def _record(self, ex: Exchange) -> None:
        """Settle and hand the record to storage, exactly once per request."""
        if ex.recorded:
            return
        ex.recorded = True
        rec = ex.record
        if ex.tags is not None:
            rec.workflow, rec.env = ex.tags.workflow, ex.tags.env
            rec.tenant, rec.prompt_version = ex.tags.tenant, ex.tags.prompt_version
            rec.correlation_id = ex.tags.correlation_id
        self._settle(ex)
        if ex.hold is not None:
            self.budget.settle(ex.hold, to_pico(rec.cost_usd or 0.0), self.clock.now())
        rec.latency_ms = self._elapsed_ms(ex)
        self.stats.requests += 1
        self.stats.by_status[rec.status] = self.stats.by_status.get(rec.status, 0) + 1
        self.stats.cost_usd += rec.cost_usd or 0.0
        self.recorder(rec)


@dataclass(frozen=True, slots=True)
class _Failure:
    """Why an attempt failed, and what the client gets if it is the last one."""

    reason: str  # the record's error_type
    down: bool  # counts towards opening the provider's circuit
    retryable: bool
    reached: bool  # the provider may have done (billable) work
    status: int = 502
    code: str = "upstream_unavailable"
    message: str = ""


def _error_body(response: httpx.Response) -> bytes:
    """The body of an answer with a retryable status (read by _attempt); other bodies stay unread for the relay."""
    return response.content if response.status_code in retry.RETRY_STATUSES else b""


def _transport_failure(e: BaseException, name: str, provider: ProviderConfig) -> _Failure:
    if isinstance(e, httpx.ConnectTimeout | httpx.PoolTimeout):
        message = (
            f"provider {name!r} did not accept a connection within connect_timeout_s = {provider.connect_timeout_s:g} s"
        )
        return _Failure("timeout", True, True, False, 504, "upstream_timeout", message)
    if isinstance(e, TimeoutError | httpx.TimeoutException):
        message = (
            f"provider {name!r} sent no answer within first_byte_timeout_s = {provider.first_byte_timeout_s:g} s; "
            "not retried, since it may have done (and billed) the work"
        )
        return _Failure("timeout", True, False, True, 504, "upstream_timeout", message)
    if isinstance(e, httpx.ConnectError) and _caused_by(e, socket.gaierror):
        host = httpx.URL(provider.base_url).host
        message = (
            f"the host of provider {name!r} ({host}) does not resolve: check its base_url and the DNS of this machine"
        )
        return _Failure("dns_error", True, True, False, 502, "upstream_unavailable", message)
    message = f"provider {name!r} is unreachable: {type(e).__name__}: {e}"
    return _Failure("connect_error", True, True, False, 502, "upstream_unavailable", message)


def _caused_by(e: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _when(moment: datetime | None) -> str | None:
    return None if moment is None else rfc3339_ms(moment)


def _paused(pause: Pause, now: datetime) -> Refusal:
    if pause.until is None:
        return Refusal(
            429,
            "workflow_paused",
            f"workflow {pause.workflow!r} is paused (by {pause.by}) until resumed: picometer resume {pause.workflow}",
            [NO_RETRY],
        )
    wait = seconds_until(pause.until, now)
    return Refusal(
        429,
        "workflow_paused",
        f"workflow {pause.workflow!r} is paused (by {pause.by}) for another {format_duration(pause.until - now)}, "
        f"until {rfc3339_ms(pause.until)}; resume it sooner with: picometer resume {pause.workflow}",
        [(b"retry-after", str(wait).encode()), NO_RETRY],
    )


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    request_id: str | None = None,
    extra: list[tuple[bytes, bytes]] | None = None,
    content_type: bytes = JSON[1],
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if request_id:
        headers.append((b"x-picometer-request-id", request_id.encode()))
    headers.extend(extra or [])
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _read_body(receive: Receive, limit: int, headers: dict[str, str]) -> bytes | None:
    """The whole request body, or None once it passes `limit` (checked before reading when declared)."""
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def _parse_json_object(body: bytes) -> dict[str, Any]:
    if not body:
        raise Refusal(400, "invalid_request_error", "the request body is empty; this endpoint needs a JSON object")
    try:
        parsed = json.loads(body)
    except UnicodeDecodeError:
        raise Refusal(
            400, "invalid_request_error", "the request body is not UTF-8 text; send JSON encoded as UTF-8"
        ) from None
    except ValueError as e:
        raise Refusal(400, "invalid_request_error", f"the request body is not valid JSON ({e})") from None
    if not isinstance(parsed, dict):
        raise Refusal(400, "invalid_request_error", "the request body must be a JSON object")
    return parsed


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
