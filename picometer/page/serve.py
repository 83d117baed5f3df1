"""GET /-/ui and its forms (POST /-/ui/login, logout, pause, resume, mute): who may see it, and what each form does,
through the same operations as the CLI and the bot.

Without [server].admin_token the page answers loopback clients only (as the other control routes do), and only
when they name the host by a loopback name, an address or this machine's name (a web page that rebinds its own
name to 127.0.0.1 gets nothing).
With one, everyone logs in with it first. Every form carries a CSRF token; a POST without the right one gets 403."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs

import structlog

from picometer import ops
from picometer.asgi import Receive, Scope
from picometer.config import is_loopback
from picometer.gateway.admin import Headed, header_map
from picometer.gateway.body import read_body
from picometer.gateway.origin import local_host
from picometer.gateway.tags import clean_tag
from picometer.gateway.tries import TRIES, Tries, again_in
from picometer.page import render
from picometer.page.session import LOOPBACK, MAX_SESSIONS, Sessions, clear_cookie, cookie, set_cookie

log = structlog.get_logger("picometer.page")

FORM_LIMIT = 8192  # a form holds a token, a name and a CSRF token
DAYS = 14  # the chart's span
MUTE = timedelta(hours=24)  # what "Mute 24h" does, as the bot's button
HTML = b"text/html; charset=utf-8"
SECURITY = [
    (b"cache-control", b"no-store"),
    (
        b"content-security-policy",
        b"default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; "
        b"frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


class Page:
    def __init__(self, operations: ops.Operations, tries: Tries | None = None) -> None:
        self.ops = operations
        self.sessions = Sessions(operations.clock)
        self.tries = tries or Tries(operations.clock.monotonic)  # wrong tokens per client: the control routes' count
        self._notices: dict[str, tuple[str, bool]] = {}  # session -> what its last action did, shown once

    async def __call__(self, scope: Scope, receive: Receive) -> Headed:
        action = scope["path"].removeprefix("/-/ui").removeprefix("/")  # "" for the page itself
        headers = header_map(scope["headers"])
        secret = self.ops.config.secrets.get("server.admin_token")
        client = (scope.get("client") or ("", 0))[0]
        if secret is None:
            if not is_loopback(client):
                return _html(403, render.message("Loopback only", "Without [server].admin_token the page answers "
                             "only on this machine; set admin_token to log in from elsewhere."))  # fmt: skip
            if not local_host(headers.get("host")):
                return _html(403, render.message("Loopback only", "Open the page as http://127.0.0.1:PORT/-/ui "
                             "(an SSH tunnel keeps that address), or set [server].admin_token."))  # fmt: skip
            sid = LOOPBACK
            if action == "login":
                return _see_page()
        else:
            token, sid = secret.value, cookie(headers.get("cookie")) or ""
            if action == "login":
                return await self._login(receive, headers, token, client)
            if not self.sessions.valid(sid, token):
                if action:
                    return _html(403, render.message("Log in first", "This form needs a session: log in again."))
                return _html(200, render.login())
        if not action:
            return _html(200, await self._page(sid, logged_in=secret is not None))
        form = await _form(receive, headers)
        if form is None:
            return _html(413, render.message("Too large", f"A form here is at most {FORM_LIMIT} bytes."))
        if not self.sessions.csrf_ok(sid, form.get("csrf", "")):
            log.warning("page form refused: no or wrong CSRF token", action=action, client=client)
            return _html(403, render.message("Stale form", "The form's token is missing or stale: reload the page."))
        if action == "logout":
            self.sessions.logout(sid)
            return _see_page([(b"set-cookie", clear_cookie())])
        self._tell(sid, self._act(action, form))
        return _see_page()

    async def _login(self, receive: Receive, headers: dict[str, str], token: str, client: str) -> Headed:
        form = await _form(receive, headers)
        if wait := self.tries.wait_s(client):  # asked once the form is in: logins sent at once are all counted
            log.warning("page login refused: too many wrong tokens", client=client)
            text = f"{TRIES} wrong tokens from this address: {again_in(wait)}."
            return _html(429, render.message("Too many tries", text), [(b"retry-after", str(wait).encode())])
        sid = self.sessions.login(form.get("token", ""), token) if form is not None else None
        if sid is None:
            self.tries.wrong(client)
            log.warning("page login refused", client=client)
            return _html(401, render.login(refused=True))
        self.tries.right(client)
        log.info("page login", client=client)
        return _see_page([(b"set-cookie", set_cookie(sid))])

    def _act(self, action: str, form: dict[str, str]) -> tuple[str, bool]:
        """Carry out one button, through the operations: what happened, and whether it went as asked."""
        now, zone = self.ops.clock.now(), self.ops.zone
        if action == "mute":
            kind, _, scope = form.get("alert", "").partition("@")
            try:
                return self.ops.mute(kind, scope, MUTE).sentence(zone), True
            except ValueError as e:
                return str(e), False
        workflow = clean_tag(form.get("workflow"))
        if not workflow:
            return "name a workflow", False
        if action == "resume":
            done = ops.resume(self.ops.state, workflow, "page", now)
        else:
            typo = ops.unknown(workflow, self.ops.known_workflows())
            if typo is not None:
                return typo, False
            done = ops.pause(self.ops.state, workflow, None, "page", now)
        return done.sentence(zone) + ("" if done.warning is None else f" ({done.warning})"), done.warning is None

    def _tell(self, sid: str, notice: tuple[str, bool]) -> None:
        self._notices.pop(sid, None)
        while len(self._notices) > MAX_SESSIONS:
            del self._notices[next(iter(self._notices))]
        self._notices[sid] = notice

    async def _page(self, sid: str, logged_in: bool) -> str:
        o = self.ops
        status = await o.full_status()
        spend = await o.daily_spend(DAYS)
        view = render.View(
            status=status,
            spend=spend,
            workflows=o.known_workflows(),
            calls=[render.call_row(r, o.zone) for r in reversed(o.calls)],
            csrf=self.sessions.csrf(sid),
            logged_in=logged_in,
            now=o.clock.now().astimezone(o.zone).strftime("%Y-%m-%d %H:%M:%S %Z"),
            notice=self._notices.pop(sid, None),
        )
        return render.page(view)


async def _form(receive: Receive, headers: dict[str, str]) -> dict[str, str] | None:
    """A urlencoded form's fields (the first value of each), or None when the body is over FORM_LIMIT."""
    body = await read_body(receive, FORM_LIMIT, headers)
    if body is None:
        return None
    try:
        fields = parse_qs(body.decode("utf-8", "replace"), max_num_fields=8)
    except ValueError:
        return {}
    return {name: values[0] for name, values in fields.items()}


def _html(status: int, text: str, extra: list[tuple[bytes, bytes]] | None = None) -> Headed:
    return status, text.encode(), HTML, SECURITY + (extra or [])


def _see_page(extra: list[tuple[bytes, bytes]] | None = None) -> Headed:
    """After a form: back to the page (303, so a reload does not post the form again)."""
    return 303, b"", HTML, [*SECURITY, (b"location", b"/-/ui"), *(extra or [])]
