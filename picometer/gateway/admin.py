"""The control routes on the same listener: /-/health, /-/status, /metrics, /-/pause, /-/resume, /-/canary, and the
page (/-/ui)."""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import structlog

from picometer import ops
from picometer.asgi import Receive, Scope, Send
from picometer.clock import Clock
from picometer.config import Config, is_loopback
from picometer.duration import parse_duration
from picometer.gateway.body import ClientGone, parse_json_object, read_body
from picometer.gateway.origin import local_host, origin_allowed
from picometer.gateway.refusals import Refusal, error_body
from picometer.gateway.tags import clean_tag, presented_key
from picometer.gateway.tries import TRIES, WINDOW_S, Tries, again_in
from picometer.store.state import State

log = structlog.get_logger("picometer.gateway")


JSON = b"application/json"
CONTROL_BODY_LIMIT = 65_536
ANY = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
POST = frozenset({"POST"})
READ = frozenset({"GET", "HEAD"})
Answer = tuple[int, bytes, bytes]  # status, body, content type
PAGE_ACTIONS = ("login", "logout", "pause", "resume", "mute")  # POST /-/ui/{action}, the page's forms
Headed = tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]  # the same with its own headers (the page's cookies)


@dataclass(frozen=True, slots=True)
class AdminRoute:
    path: str
    methods: frozenset[str]
    guarded: bool  # loopback only without [server].admin_token; with one, the token from everyone
    answer: Callable[[Scope, Receive], Awaitable[Answer | Headed]]

    def matches(self, path: str) -> bool:
        return path.startswith(self.path) if self.path.endswith("/") else path == self.path


def _json(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False).encode()


class Admin:
    def __init__(
        self,
        config: Config,
        clock: Clock,
        state: State,
        ready: Callable[[], bool],
        status: Callable[[], Awaitable[dict[str, Any]]],
        run_canary: Callable[[], Awaitable[dict[str, Any]]] | None = None,
        metrics: Callable[[], Awaitable[tuple[bytes, str]]] | None = None,
        known: Callable[[], Collection[str]] | None = None,
        page: Callable[[Scope, Receive], Awaitable[Headed]] | None = None,
    ) -> None:
        self.config, self.clock, self.state = config, clock, state
        self._page = page  # picometer.page: it checks its own login (a session cookie), so its routes are unguarded
        self._known = known  # the workflow names a pause can mean; None: any name goes
        self._ready, self._status, self._run_canary, self._metrics = ready, status, run_canary, metrics
        self._routes = self.routes()
        self.tries = Tries(clock.monotonic)  # wrong admin tokens per client

    def routes(self) -> tuple[AdminRoute, ...]:
        """Every control route in one table: its path (a trailing "/" takes a workflow name after it), the methods
        it answers, whether it needs the admin token (loopback without one), and what answers it."""
        return (
            AdminRoute("/-/health", ANY, False, self._health),
            AdminRoute("/-/status", ANY, True, self._status_route),
            AdminRoute("/metrics", ANY, True, self._metrics_route),
            AdminRoute("/-/pause/", POST, True, self._control),
            AdminRoute("/-/resume/", POST, True, self._control),
            AdminRoute("/-/canary", POST, True, self._canary),
            AdminRoute("/-/ui", READ, False, self._page_route),
            *(AdminRoute(f"/-/ui/{action}", POST, False, self._page_route) for action in PAGE_ACTIONS),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        route = next((r for r in self._routes if r.matches(path)), None)
        try:
            if route is None:
                raise Refusal(404, "not_found", f"no admin route {path}")
            if scope["method"] not in route.methods:
                where = route.path + ("WORKFLOW" if route.path.endswith("/") else "")
                raise Refusal(405, "invalid_request_error", f"use {' or '.join(sorted(route.methods))} for {where}")
            if route.guarded:
                self.authorize(scope, header_map(scope["headers"]))
            answer = await route.answer(scope, receive)
            extra = answer[3] if len(answer) == 4 else None
            await respond(send, answer[0], answer[1], content_type=answer[2], extra=extra)
        except ClientGone:
            return
        except Refusal as r:
            await respond(send, r.status, error_body("openai", r.code, r.message), extra=r.headers)

    async def _health(self, scope: Scope, receive: Receive) -> Answer:
        ready = self._ready()
        return 200 if ready else 503, _json({"status": "ok" if ready else "starting"}), JSON

    async def _status_route(self, scope: Scope, receive: Receive) -> Answer:
        return 200, _json(await self._status()), JSON  # spend and workflow names: guarded

    async def _metrics_route(self, scope: Scope, receive: Receive) -> Answer:
        if self._metrics is None:
            raise Refusal(404, "not_found", "no admin route /metrics")
        body, content_type = await self._metrics()
        return 200, body, content_type.encode()

    async def _page_route(self, scope: Scope, receive: Receive) -> Headed:
        if self._page is None:
            raise Refusal(404, "not_found", "this picometer serves no page")
        return await self._page(scope, receive)

    async def _canary(self, scope: Scope, receive: Receive) -> Answer:
        """POST /-/canary: run every probe now and answer with the results (what `picometer canary` shows)."""
        if self._run_canary is None:
            raise Refusal(404, "not_found", "this picometer runs no canary")
        return 200, _json(await self._run_canary()), JSON

    async def _control(self, scope: Scope, receive: Receive) -> Answer:
        """POST /-/pause/{workflow} (optional "for": "2h" as query or JSON) and POST /-/resume/{workflow}."""
        headers = header_map(scope["headers"])
        action, _, raw_name = scope["path"][3:].partition("/")
        workflow = clean_tag(raw_name)
        if not workflow:
            raise Refusal(400, "invalid_request_error", f"name a workflow: POST /-/{action}/WORKFLOW")
        now = self.clock.now()
        by = clean_tag(headers.get("x-picometer-by")) or "http"
        if action == "resume":
            return 200, _json(ops.resume(self.state, workflow, by, now).as_dict()), JSON
        body = await read_body(receive, CONTROL_BODY_LIMIT, headers)
        if body is None:
            raise Refusal(413, "invalid_request_error", f"a control request body is at most {CONTROL_BODY_LIMIT} bytes")
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        wanted = (query.get("for") or [None])[0]
        force = (query.get("force") or [""])[0] in ("1", "true")
        if body.strip():
            options = parse_json_object(body)
            wanted, force = options.get("for", wanted), options.get("force") is True or force
        typo = None if force or self._known is None else ops.unknown(workflow, self._known())
        if typo is not None:
            raise Refusal(404, "unknown_workflow", typo)
        until = None
        if wanted:
            try:
                until = now + parse_duration(str(wanted))
            except ValueError as e:
                raise Refusal(400, "invalid_request_error", str(e)) from None
        return 200, _json(ops.pause(self.state, workflow, until, by, now).as_dict()), JSON

    def authorize(self, scope: Scope, headers: dict[str, str]) -> None:
        """Loopback only without [server].admin_token; with one, every caller needs it."""
        token = self.config.secrets.get("server.admin_token")
        client = scope.get("client") or ("", 0)
        if token is not None:
            if wait := self.tries.wait_s(client[0]):
                raise too_many_tries(wait)
            given = presented_key(headers) or headers.get("x-picometer-admin-token") or ""
            if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), token.value.encode()):
                self.tries.wrong(client[0])
                raise Refusal(401, "invalid_api_key", "this control route needs [server].admin_token as a Bearer token")
            self.tries.right(client[0])
            return
        if not is_loopback(client[0]):
            raise Refusal(
                403,
                "permission_denied",
                "control routes without [server].admin_token answer only on loopback; set admin_token to allow this",
            )
        if not local_host(headers.get("host")) or not origin_allowed(headers.get("origin"), ()):
            raise Refusal(
                403,
                "permission_denied",
                "control routes without [server].admin_token answer only when asked for by 127.0.0.1, localhost, "
                "an IP address or this machine's name, and not from a web page; set admin_token to allow this",
            )


def too_many_tries(wait_s: int) -> Refusal:
    return Refusal(
        429,
        "too_many_attempts",
        f"{TRIES} wrong admin tokens from this address within {WINDOW_S / 60:.0f} minutes: {again_in(wait_s)}",
        [(b"retry-after", str(wait_s).encode())],
    )


def header_map(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in raw:
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            text = value.decode("latin-1")
        out[name.decode("latin-1").lower()] = text
    return out


async def respond(
    send: Send,
    status: int,
    body: bytes,
    request_id: str | None = None,
    extra: list[tuple[bytes, bytes]] | None = None,
    content_type: bytes = JSON,
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if request_id:
        headers.append((b"x-picometer-request-id", request_id.encode()))
    headers.extend(extra or [])
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
