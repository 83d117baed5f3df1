"""Wrong admin tokens, counted per client: after TRIES wrong ones within WINDOW_S a client is refused until that
window ends, so a token cannot be guessed at network speed through the control routes or the page's login.
An IPv6 client counts by its /64 (one machine holds a whole /64). The table is bounded: with CLIENTS addresses
in it, every new one counts together under one shared entry, so a flood of addresses neither grows memory nor
pushes a locked address out to guess again."""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable

TRIES = 10
WINDOW_S = 900.0
CLIENTS = 256
OVERFLOW = "*"  # the shared entry of the addresses that came while the table was full


def who(address: str) -> str:
    """The key a client is counted under: its IPv4 address, or its IPv6 /64."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class Tries:
    def __init__(self, monotonic: Callable[[], float]) -> None:
        self._now = monotonic
        self._wrong: dict[str, tuple[float, int]] = {}  # client -> (its window's start, wrong tokens in it)

    def _key(self, address: str) -> str:
        key = who(address)
        if key in self._wrong or len(self._wrong) < CLIENTS:
            return key
        now = self._now()  # full: forget the windows that are over, else count this one with the other newcomers
        self._wrong = {k: e for k, e in self._wrong.items() if now - e[0] < WINDOW_S}
        return key if len(self._wrong) < CLIENTS else OVERFLOW

    def wait_s(self, address: str) -> int:
        """0 when this client may try a token now, else the whole seconds until it may."""
        entry = self._wrong.get(key := self._key(address))
        if entry is None:
            return 0
        left = entry[0] + WINDOW_S - self._now()
        if left <= 0:
            del self._wrong[key]
            return 0
        return math.ceil(left) if entry[1] >= TRIES else 0

    def wrong(self, address: str) -> None:
        """A wrong token from this client."""
        key, now = self._key(address), self._now()
        start, count = self._wrong.get(key, (now, 0))
        if now - start >= WINDOW_S:
            start, count = now, 0
        self._wrong[key] = (start, count + 1)

    def right(self, address: str) -> None:
        """The right token: this client's count starts again."""
        self._wrong.pop(who(address), None)


def again_in(wait_s: int) -> str:
    """When a locked-out client may try again, in whole minutes rounded up."""
    return f"try again in {-(-wait_s // 60)} min"
