"""Who may use the page, kept in memory: a login with the admin token opens a session (the cookie holds a random
id, never the token), and every form carries a CSRF token made from the session with a per-process key. A restart
logs everyone out; so does a reload that changes the admin token."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from picometer.clock import Clock

COOKIE = "picometer_ui"
SESSION_S = 12 * 3600  # a login lasts a working day
MAX_SESSIONS = 32  # past this the oldest is dropped: a flood of logins cannot grow memory
LOOPBACK = ""  # the session of a loopback client when no admin token is set (no login, forms still carry a token)


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


class Sessions:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._key = secrets.token_bytes(32)
        self._open: dict[str, tuple[float, bytes]] = {}  # session id -> (expiry, monotonic; the token's fingerprint)

    def _mac(self, purpose: str, text: str) -> bytes:
        return hmac.new(self._key, _bytes(f"{purpose}:{text}"), hashlib.sha256).digest()

    def login(self, given: str, token: str) -> str | None:
        """A new session id when `given` is the admin token (compared in constant time), else None."""
        if not hmac.compare_digest(_bytes(given), _bytes(token)):
            return None
        now = self.clock.monotonic()
        self._open = {sid: entry for sid, entry in self._open.items() if entry[0] > now}
        while len(self._open) >= MAX_SESSIONS:
            del self._open[next(iter(self._open))]
        sid = secrets.token_urlsafe(32)
        self._open[sid] = (now + SESSION_S, self._mac("token", token))
        return sid

    def valid(self, sid: str | None, token: str) -> bool:
        """Whether this cookie names a live session opened with the admin token in force now."""
        entry = self._open.get(sid) if sid else None
        if entry is None or entry[0] <= self.clock.monotonic():
            return False
        return hmac.compare_digest(entry[1], self._mac("token", token))

    def logout(self, sid: str | None) -> None:
        if sid:
            self._open.pop(sid, None)

    def csrf(self, sid: str) -> str:
        """The token every form of this session carries."""
        return self._mac("csrf", sid).hex()

    def csrf_ok(self, sid: str, given: str) -> bool:
        return hmac.compare_digest(_bytes(self.csrf(sid)), _bytes(given))


def cookie(header: str | None, name: str = COOKIE) -> str | None:
    """One cookie's value from a Cookie header (the first of that name), or None."""
    for part in (header or "").split(";")[:64]:
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value.strip('"') or None
    return None


def set_cookie(sid: str) -> bytes:
    return f"{COOKIE}={sid}; Path=/-/ui; Max-Age={SESSION_S}; HttpOnly; SameSite=Strict".encode()


def clear_cookie() -> bytes:
    return f"{COOKIE}=; Path=/-/ui; Max-Age=0; HttpOnly; SameSite=Strict".encode()
