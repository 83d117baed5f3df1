"""Loopback fakes of the alert services, each speaking its documented API: ntfy (POST to a topic, headers,
Bearer token), Gotify (POST /message, JSON, X-Gotify-Key), Discord (execute webhook: JSON content of at most
2,000 characters, 204, its 429 shape) and a generic webhook. Each records every request; a test can take it
down (503), script its next answers (429 with Retry-After, ...), or stop it and start it again on its port."""

from __future__ import annotations

import contextlib
import email.header
import errno
import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import urlsplit

from tests.patience import patience

NTFY_TOPIC = "picometer-alerts"
DISCORD_HOOK = "/api/webhooks/1234567890/s3cret-webhook-token"
NTFY_PRIORITIES = {"1", "2", "3", "4", "5", "min", "low", "default", "high", "urgent", "max"}

Answer = tuple[int, dict[str, str], bytes]


@dataclass(frozen=True)
class Took:
    at: float  # monotonic, on arrival
    path: str  # with the query string
    headers: dict[str, str]  # names in lower case
    body: bytes
    status: int  # what the fake answered

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def title(self) -> str:
        """ntfy's Title header as ntfy reads it (RFC 2047 encoded words decoded)."""
        return str(email.header.make_header(email.header.decode_header(self.headers.get("title", ""))))


class Receiver:
    """One service's fake: `service` is "ntfy", "gotify", "discord" or "webhook"; `token` is what it accepts
    (ntfy: Bearer token, Gotify: application token)."""

    def __init__(self, service: str, token: str = "", port: int = 0) -> None:
        self.service, self.token = service, token
        self.requests: list[Took] = []
        self.down = False  # answer 503 to everything, like an outage
        self.script: deque[Answer] = deque()  # answers given, in order, before the normal ones
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                fake._handle(self)

            do_PUT = do_GET = do_POST

        self.server = _bound(port, Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        base = f"http://127.0.0.1:{self.port}"
        self.base = base
        self.url = {
            "ntfy": f"{base}/{NTFY_TOPIC}",
            "gotify": base,
            "discord": f"{base}{DISCORD_HOOK}",
            "webhook": f"{base}/hooks/picometer",
        }[service]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    # ---------------------------------------------------------------- what tests use

    def taken(self) -> list[Took]:
        """The requests it accepted, in order of arrival."""
        with self._lock:
            return [t for t in self.requests if t.ok]

    def refused(self) -> list[Took]:
        with self._lock:
            return [t for t in self.requests if not t.ok]

    def wait_taken(self, count: int, timeout: float = 10.0) -> list[Took]:
        return self._wait(self.taken, count, timeout, "accepted")

    def wait_refused(self, count: int, timeout: float = 10.0) -> list[Took]:
        return self._wait(self.refused, count, timeout, "refused")

    def _wait(self, what: Any, count: int, timeout: float, word: str) -> list[Took]:
        deadline = time.monotonic() + patience(timeout)
        while len(got := what()) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.service}: {len(got)} requests {word}, wanted {count}: {self.requests}")
            time.sleep(0.02)
        return list(got)

    def texts(self) -> list[str]:
        """What people read: ntfy's body, Gotify's message, Discord's content, the webhook's text."""
        key = {"gotify": "message", "discord": "content", "webhook": "text"}
        return [t.body.decode() if self.service == "ntfy" else t.json()[key[self.service]] for t in self.taken()]

    # ---------------------------------------------------------------- the API

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        arrived = time.monotonic()
        length = int(req.headers.get("content-length") or 0)
        body = req.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in req.headers.items()}
        if self.down:
            status, extra, answer = 503, {"content-type": "text/plain"}, b"Service Unavailable"
        elif self.script:
            status, extra, answer = self.script.popleft()
        else:
            status, extra, answer = getattr(self, f"_{self.service}")(req.command, req.path, headers, body)
        with self._lock:
            self.requests.append(Took(arrived, req.path, headers, body, status))
        req.send_response(status)
        for name, value in extra.items():
            req.send_header(name, value)
        req.send_header("content-length", str(len(answer)))
        req.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            req.wfile.write(answer)

    def _ntfy(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        if method not in ("POST", "PUT") or urlsplit(path).path != f"/{NTFY_TOPIC}":
            return _json(404, {"code": 40401, "http": 404, "error": "page not found"})
        if self.token and headers.get("authorization") != f"Bearer {self.token}":
            return _json(401, {"code": 40101, "http": 401, "error": "unauthorized"})
        priority = headers.get("priority", "3")
        if priority not in NTFY_PRIORITIES:
            return _json(400, {"code": 40007, "http": 400, "error": "invalid priority"})
        message = {
            "id": f"m{len(self.requests)}",
            "time": int(time.time()),
            "event": "message",
            "topic": NTFY_TOPIC,
            "message": body.decode("utf-8"),
            "priority": int(priority) if priority.isdigit() else 3,
            "tags": [t for t in headers.get("tags", "").split(",") if t],
        }
        return _json(200, message)

    def _gotify(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        if method != "POST" or urlsplit(path).path != "/message":
            return _json(404, {"error": "Not Found", "errorCode": 404, "errorDescription": "page not found"})
        if headers.get("x-gotify-key") != self.token:
            return _json(
                401,
                {
                    "error": "Unauthorized",
                    "errorCode": 401,
                    "errorDescription": "you need to provide a valid access token or user credentials "
                    "to access this api",
                },
            )
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("message"), str) or not data["message"]:
            return _json(
                400, {"error": "Bad Request", "errorCode": 400, "errorDescription": "Field 'message' is required"}
            )
        if not isinstance(data.get("priority", 0), int):
            return _json(400, {"error": "Bad Request", "errorCode": 400, "errorDescription": "priority must be an int"})
        message = {"id": len(self.requests) + 1, "appid": 1, "date": "2026-11-23T12:00:00Z", **data}
        return _json(200, message)

    def _discord(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        if method != "POST" or urlsplit(path).path != DISCORD_HOOK:
            return _json(404, {"message": "Unknown Webhook", "code": 10015})
        try:
            data = json.loads(body)
        except ValueError:
            return _json(400, {"message": "The request body contains invalid JSON.", "code": 50109})
        content = data.get("content") or ""
        if not content and not data.get("embeds"):
            return _json(400, {"message": "Cannot send an empty message", "code": 50006})
        if len(content.encode("utf-16-le")) // 2 > 2000:
            return _json(400, {"message": "Invalid Form Body", "code": 50035, "errors": {"content": "too long"}})
        return 204, {}, b""  # no ?wait=true: no message object

    def _webhook(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        if method != "POST" or urlsplit(path).path != "/hooks/picometer":
            return 404, {"content-type": "text/plain"}, b"not found"
        return 200, {"content-type": "text/plain"}, b"ok"


def _json(status: int, data: Any) -> Answer:
    return status, {"content-type": "application/json"}, json.dumps(data).encode()


def discord_rate_limited(retry_after: float) -> Answer:
    """Discord's 429: the wait in the JSON body (seconds, fractional); this one without a Retry-After header."""
    body = {"message": "You are being rate limited.", "retry_after": retry_after, "global": False}
    return _json(429, body)


def too_many(retry_after_s: int) -> Answer:
    """A plain HTTP 429 with Retry-After in seconds (ntfy's rate limiter, a proxy)."""
    status, headers, body = _json(429, {"code": 42901, "http": 429, "error": "limit reached: too many requests"})
    return status, {**headers, "retry-after": str(retry_after_s)}, body


def _bound(port: int, handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    """A server on `port` (0: any). A port chosen earlier and bound only now may be held for a moment by a
    connection's local end, as ports chosen by the system are shared with outgoing connections: try for 10 s."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return ThreadingHTTPServer(("127.0.0.1", port), handler)
        except OSError as e:
            if e.errno != errno.EADDRINUSE or not port or time.monotonic() > deadline:
                raise
            time.sleep(0.1)
