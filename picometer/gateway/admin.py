"""The control routes on the same listener: /-/health, /-/status, /metrics, /-/pause, /-/resume, /-/canary."""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

import structlog

from picometer import ops
from picometer.clock import Clock
from picometer.config import Config, is_loopback
from picometer.duration import parse_duration
from picometer.gateway.admission import ClientGone, parse_json_object, read_body
from picometer.gateway.refusals import Refusal, error_body
from picometer.gateway.tags import clean_tag, presented_key
from picometer.store.state import State

log = structlog.get_logger("picometer.gateway")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON = b"application/json"
CONTROL_BODY_LIMIT = 65_536


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
    ) -> None:
        self.config, self.clock, self.state = config, clock, state
        self._ready, self._status, self._run_canary, self._metrics = ready, status, run_canary, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        try:
            if path == "/-/health":
                ready = self._ready()
                await respond(
                    send, 200 if ready else 503, json.dumps({"status": "ok" if ready else "starting"}).encode()
                )
            elif path == "/-/status":
                self.authorize(scope, header_map(scope["headers"]))  # spend and workflow names are not for all
                await respond(send, 200, json.dumps(await self._status(), ensure_ascii=False).encode())
            elif path == "/metrics" and self._metrics is not None:
                self.authorize(scope, header_map(scope["headers"]))
                body, content_type = await self._metrics()
                await respond(send, 200, body, content_type=content_type.encode())
            elif path.startswith(("/-/pause/", "/-/resume/")) or path == "/-/canary":
                answer = await (self._canary(scope) if path == "/-/canary" else self._control(scope, receive))
                await respond(send, 200, json.dumps(answer, ensure_ascii=False).encode())
            else:
                await respond(send, 404, error_body("openai", "not_found", f"no admin route {path}"))
        except ClientGone:
            return
        except Refusal as r:
            await respond(send, r.status, error_body("openai", r.code, r.message))

    async def _canary(self, scope: Scope) -> dict[str, Any]:
        """POST /-/canary: run every probe now and answer with the results (what `picometer canary` shows)."""
        if scope["method"] != "POST":
            raise Refusal(405, "invalid_request_error", "use POST for /-/canary")
        self.authorize(scope, header_map(scope["headers"]))
        if self._run_canary is None:
            raise Refusal(404, "not_found", "this picometer runs no canary")
        return await self._run_canary()

    async def _control(self, scope: Scope, receive: Receive) -> dict[str, Any]:
        """POST /-/pause/{workflow} (optional "for": "2h" as query or JSON) and POST /-/resume/{workflow}."""
        if scope["method"] != "POST":
            raise Refusal(405, "invalid_request_error", "use POST for /-/pause/{workflow} and /-/resume/{workflow}")
        headers = header_map(scope["headers"])
        self.authorize(scope, headers)
        action, _, raw_name = scope["path"][3:].partition("/")
        workflow = clean_tag(raw_name)
        if not workflow:
            raise Refusal(400, "invalid_request_error", f"name a workflow: POST /-/{action}/WORKFLOW")
        now = self.clock.now()
        by = clean_tag(headers.get("x-picometer-by")) or "http"
        if action == "resume":
            return ops.resume(self.state, workflow, by, now).as_dict()
        body = await read_body(receive, CONTROL_BODY_LIMIT, headers)
        if body is None:
            raise Refusal(413, "invalid_request_error", f"a control request body is at most {CONTROL_BODY_LIMIT} bytes")
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        wanted = (query.get("for") or [None])[0]
        if body.strip():
            options = parse_json_object(body)
            wanted = options.get("for", wanted)
        until = None
        if wanted:
            try:
                until = now + parse_duration(str(wanted))
            except ValueError as e:
                raise Refusal(400, "invalid_request_error", str(e)) from None
        return ops.pause(self.state, workflow, until, by, now).as_dict()

    def authorize(self, scope: Scope, headers: dict[str, str]) -> None:
        """Loopback only without [server].admin_token; with one, every caller needs it."""
        token = self.config.secrets.get("server.admin_token")
        client = scope.get("client") or ("", 0)
        if token is not None:
            given = presented_key(headers) or headers.get("x-picometer-admin-token") or ""
            if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), token.value.encode()):
                raise Refusal(401, "invalid_api_key", "this control route needs [server].admin_token as a Bearer token")
            return
        if not is_loopback(client[0]):
            raise Refusal(
                403,
                "permission_denied",
                "control routes without [server].admin_token answer only on loopback; set admin_token to allow this",
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
