"""Which web pages may use picometer from the user's browser. picometer adds the provider's key to a call that
brings none, so any page the user opens could spend through a loopback port with a POST the browser sends
without asking (a form, or fetch with text/plain), and a page that rebinds its own name to 127.0.0.1 could read
what a loopback GET answers (files, stored responses, the spend). Browsers name the page in Origin on every
POST and the name they asked for in Host; CLIs, SDKs and scrapers send no Origin and name the daemon by an
address or this machine's name. So a call that brings no picometer client key (which such a page cannot know)
is refused when its Origin is neither a page on this machine nor listed in [server].allowed_origins, or when
its Host is a name other than a loopback one or this machine's (as Ollama and Jupyter do); so are the control
routes without an admin token."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Collection
from functools import cache, lru_cache

from picometer.config import is_loopback


def _split(host: str) -> tuple[str, bool]:
    """(name, whether what follows it is a port or nothing) of a Host header or an origin's host part."""
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        sep, port = rest[:1], rest[1:]
    else:
        name, sep, port = host.partition(":")
    return name, sep in ("", ":") and (not port or port.isdigit())


def loopback_host(host: str | None) -> bool:
    """Whether a Host header names this machine by a loopback name or address (any port); no header passes."""
    if not host:
        return True
    name, port_ok = _split(host)
    return port_ok and is_loopback(name)


@cache
def _own_names() -> frozenset[str]:
    """This machine's own names (Raspberry Pi OS maps its hostname to 127.0.1.1): no page elsewhere can rebind them.
    No DNS lookup: this runs on the event loop."""
    name = socket.gethostname().lower()
    return frozenset({name, f"{name}.local"})


@lru_cache(maxsize=64)  # asked on every call without a client key; a client sends one or two Host values
def local_host(host: str | None) -> bool:
    """Whether a Host header is one no other site's page can send: a loopback name, an IP address, or this
    machine's own name. A page that rebinds its own name to 127.0.0.1 sends its own name."""
    if not host or loopback_host(host):
        return True
    name, port_ok = _split(host.lower())
    if not port_ok:
        return False
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return name in _own_names()


def origin_allowed(origin: str | None, allowed: Collection[str]) -> bool:
    """No Origin (not a browser), a loopback one (a page served on this machine), or one the config lists."""
    if origin is None:
        return True
    wanted = _canonical(origin)
    if any(wanted == _canonical(a) for a in allowed):
        return True
    scheme, sep, host = origin.partition("://")
    return bool(sep and host) and scheme.lower() in ("http", "https") and loopback_host(host)


def _canonical(origin: str) -> str:
    """An origin as browsers send it: lower case, no trailing "/", no default port (":443" on https, ":80" on http)."""
    text = origin.lower().rstrip("/")
    for scheme, port in (("https://", ":443"), ("http://", ":80")):
        if text.startswith(scheme) and text.endswith(port):
            return text.removesuffix(port)
    return text
