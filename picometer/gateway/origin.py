"""Which web pages may use picometer from the user's browser. picometer adds the provider's key to a call that
brings none, so any page the user opens could spend through a loopback port with a POST the browser sends
without asking (a form, or fetch with text/plain), and a page that rebinds its own name to 127.0.0.1 could read
what a loopback GET answers. Browsers name the page in Origin on every POST and the name they asked for in Host;
CLIs, SDKs and scrapers send no Origin. So a call with an Origin other than a loopback one or one listed in
[server].allowed_origins is refused unless it brings a picometer client key (which such a page cannot know),
and the control routes without an admin token answer only a loopback Host (as Ollama and Jupyter do)."""

from __future__ import annotations

from collections.abc import Collection

from picometer.config import is_loopback


def loopback_host(host: str | None) -> bool:
    """Whether a Host header names this machine by a loopback name or address (any port); no header passes."""
    if not host:
        return True
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        sep, port = rest[:1], rest[1:]
    else:
        name, sep, port = host.partition(":")
    return is_loopback(name) and sep in ("", ":") and (not port or port.isdigit())


def origin_allowed(origin: str | None, allowed: Collection[str]) -> bool:
    """No Origin (not a browser), a loopback one (a page served on this machine), or one the config lists."""
    if origin is None:
        return True
    wanted = origin.lower().rstrip("/")
    if any(wanted == a.lower().rstrip("/") for a in allowed):
        return True
    scheme, sep, host = origin.partition("://")
    return bool(sep and host) and scheme.lower() in ("http", "https") and loopback_host(host)
