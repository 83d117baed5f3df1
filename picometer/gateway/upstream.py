"""Calling the provider: attempts, retries, the circuit and the timeouts, until there is one answer to relay."""

from __future__ import annotations

import asyncio
import math
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import structlog

from picometer.clock import Clock
from picometer.config import ProviderConfig, RetryConfig
from picometer.gateway import forward, pool, retry
from picometer.gateway.inflow import small_body
from picometer.gateway.path import Route
from picometer.gateway.refusals import Refusal
from picometer.gateway.settle import Admitted, Outcome

log = structlog.get_logger("picometer.gateway")

URLS_KEPT = 256  # parsed upstream URLs kept; when full, the cache starts afresh
URL_KEPT_CHARS = 1024  # a longer path and query is parsed each time, never kept
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})  # given an empty body, httpx says so: Content-Length: 0


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
    counts: bool = True  # the provider's own failure: a success or failure for its circuit either way


class Upstream:
    """One per gateway: the shared connection pool and each provider's health."""

    def __init__(
        self,
        retry_config: RetryConfig,
        clock: Clock,
        transport: httpx.AsyncBaseTransport | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.config = retry_config
        self.clock = clock
        self._transport = transport
        self._owns_transport = transport is None
        self._rand = rand  # backoff jitter; tests pass their own
        self._health: dict[str, retry.Health] = {}  # per provider: retry budget, circuit, retry counts
        self._urls: dict[tuple[str, str, bytes], httpx.URL] = {}

    def reconfigure(self, retry_config: RetryConfig) -> None:
        self.config = r = retry_config
        for health in self._health.values():
            health.budget.ratio, health.budget.floor = r.budget_ratio, r.min_retries_per_minute
            health.circuit.failures, health.circuit.open_s = r.circuit_failures, r.circuit_open_s

    @property
    def transport(self) -> httpx.AsyncBaseTransport:
        if self._transport is None:
            self._transport = pool.new_transport()
        return self._transport

    async def aclose(self) -> None:
        if self._transport is not None and self._owns_transport:
            await self._transport.aclose()
            self._transport = None

    def retries(self) -> dict[str, dict[str, int]]:
        """Retries by cause, per provider called so far (reading them creates no entry for the others)."""
        return {name: dict(h.retries) for name, h in self._health.items()}

    def status(self) -> dict[str, dict[str, object]]:
        now = self.clock.monotonic()
        return {name: h.status(now) for name, h in sorted(self._health.items())}

    def health(self, provider: str) -> retry.Health:
        health = self._health.get(provider)
        if health is None:
            r = self.config
            health = retry.Health(
                retry.RetryBudget(r.budget_ratio, floor=r.min_retries_per_minute),
                retry.Circuit(r.circuit_failures, r.circuit_open_s),
            )
            self._health[provider] = health
        return health

    def _url(self, base_url: str, route: Route, query: bytes) -> httpx.URL:
        """Parsed once: calls repeat a few URLs, and parsing one costs more than the rest of the request.
        Only short ones are kept, at most URLS_KEPT, so what clients send cannot grow the cache."""
        key = (base_url, route.rest, query)
        parsed = self._urls.get(key)
        if parsed is None:
            parsed = httpx.URL(forward.upstream_url(base_url, route.upstream_path, query))
            if len(route.rest) + len(query) <= URL_KEPT_CHARS:
                if len(self._urls) >= URLS_KEPT:
                    self._urls.clear()
                self._urls[key] = parsed
        return parsed

    async def call(
        self, req: Admitted, o: Outcome, method: str, query: bytes, client_headers: list[tuple[bytes, bytes]]
    ) -> httpx.Response:
        """The provider's response, after retrying what is safe to retry; Refusal when there is none."""
        provider, name, cfg = req.provider, req.route.provider, self.config
        sent_query = forward.upstream_query(query, req.provider_key)
        url = self._url(provider.base_url, req.route, sent_query)
        headers = forward.upstream_headers(
            client_headers, provider, req.provider_key, req.endpoint.shape, key_in_query=forward.has_query_key(query)
        )
        content = req.content
        # The headers httpx adds for a body given whole, added here once: a Request given its stream skips httpx's
        # body encoding and its header merging (four fifths of the Request's cost), on every attempt.
        length = [(b"Content-Length", str(len(content)).encode())] if content or method in _BODY_METHODS else []
        sent = httpx.Headers([(b"Host", url.netloc), *headers, *length])
        health = self.health(name)
        tries = 0  # at this provider (a fallback gets its own); o.attempts counts them all for the record
        while True:
            wait = health.circuit.allow(self.clock.monotonic())
            if wait is not None:
                o.failure = o.failure or "circuit_open"
                raise Refusal(
                    503,
                    "upstream_unavailable",
                    f"provider {name!r} failed {health.circuit.consecutive} times in a row: picometer is not calling "
                    f"it for {math.ceil(wait)} s, then tries one call ([retry].circuit_open_s)",
                    [(b"retry-after", str(math.ceil(wait)).encode())],
                )
            o.attempts += 1
            tries += 1
            if tries == 1:
                health.budget.first_attempt(self.clock.monotonic())  # what the retry budget is a share of
            o.reached = True
            timeouts = forward.timeouts_for(provider)
            # A bare Request skips the client's header/cookie/URL merging: we pass everything it needs.
            request = httpx.Request(
                method, url, headers=sent, stream=httpx.ByteStream(content), extensions={"timeout": timeouts}
            )
            request.read()  # what httpx does for a body given whole: `request.content` then reads it (no copy)
            # Its record's request fields (and its prompt fingerprint) are made once it is out, as the provider works.
            waiting = pool.WHILE_WAITING.set(req.while_waiting)
            answer_by = pool.ANSWER_BY.set(time.monotonic() + provider.first_byte_timeout_s)
            try:
                response, failure = await self._attempt(request, name, provider)
            except BaseException:
                health.circuit.release()  # cancelled (client gone, total timeout): neither success nor failure
                raise
            finally:
                pool.ANSWER_BY.reset(answer_by)
                pool.WHILE_WAITING.reset(waiting)
            if failure is None:
                assert response is not None
                status = response.status_code
                if status >= 500:
                    health.circuit.failure(self.clock.monotonic())
                else:
                    health.circuit.success()
                # Earlier attempts failed; this answer decides. Upstream statuses are classified here only.
                ok = 200 <= status < 300
                o.failure = None if ok else retry.error_type_for_status(status, _error_body(response))
                timeouts["read"] = provider.timeout_s  # from here on: the longest silence between chunks
                return response
            o.failure = failure.reason
            o.reached = failure.reached
            if not failure.counts:
                health.circuit.release()
            elif failure.down:
                health.circuit.failure(self.clock.monotonic())
            else:
                health.circuit.success()
            hint = retry.wait_hint(response.headers, self.clock.now()) if response is not None else None
            delay = None
            if failure.retryable and tries < cfg.max_attempts:
                delay = retry.delay_before_retry(tries, hint, cfg.base_delay_s, cfg.max_delay_s, self._rand)
            if delay is None or not health.budget.try_retry(self.clock.monotonic()):
                if response is not None:
                    return response  # the provider's own answer, after as many tries as were sensible
                after = f" (after {tries} attempts)" if tries > 1 else ""
                raise Refusal(failure.status, failure.code, failure.message + after)
            health.retries[failure.reason] = health.retries.get(failure.reason, 0) + 1
            log.info("retrying", provider=name, reason=failure.reason, attempt=o.attempts, delay_s=delay)
            if response is not None:
                await response.aclose()
            await asyncio.sleep(delay)

    async def _attempt(
        self, request: httpx.Request, name: str, provider: ProviderConfig
    ) -> tuple[httpx.Response | None, _Failure | None]:
        """One call: (a response to pass on, None), (a retryable failure response, why) or (None, why)."""
        response = None
        try:  # the first-byte wait bounds each read until the answer starts (pool.ANSWER_BY): no timer
            response = await self.transport.handle_async_request(request)
            if response.status_code in retry.RETRY_STATUSES:
                response = await small_body(response)  # tells a quota from a rate limit
        except (TimeoutError, httpx.HTTPError) as e:
            if response is not None:
                await response.aclose()
            return None, _transport_failure(e, name, provider)
        status, body = response.status_code, _error_body(response)
        if not retry.is_retryable_status(status, body):
            return response, None
        reason = retry.error_type_for_status(status, body)
        return response, _Failure(reason, down=status >= 500 or status == 408, retryable=True, reached=True)


def _error_body(response: httpx.Response) -> bytes:
    """The body of an answer with a retryable status (read by _attempt); other bodies stay unread for the relay."""
    return response.content if response.status_code in retry.RETRY_STATUSES else b""


def _transport_failure(e: BaseException, name: str, provider: ProviderConfig) -> _Failure:
    if isinstance(e, httpx.PoolTimeout):
        # Our own connection pool is full: the provider did nothing wrong, so its circuit is not touched.
        message = (
            f"picometer's connections to provider {name!r} are all busy and none came free within "
            f"connect_timeout_s = {provider.connect_timeout_s:g} s: too many calls at once; try again shortly"
        )
        return _Failure("overloaded", False, False, False, 503, "overloaded", message, counts=False)
    if isinstance(e, httpx.ConnectTimeout):
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
