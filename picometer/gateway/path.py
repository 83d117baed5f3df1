"""One canonical form of a request path, and the route it names (pure), and the routes a config's calls use
(kept for short paths).

Metering is decided on this form and exactly this form goes upstream, so no spelling of a metered
endpoint can reach a provider unmetered: anything that could be read two ways (dot segments, empty
segments, backslashes, encoded slashes or dots, double encoding, control characters) is refused.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from picometer.config import Config
from picometer.frozen import frozen
from picometer.metering.endpoints import Endpoint, classify

_ESCAPE = re.compile(rb"%(.?.?)")
_HEX = re.compile(rb"[0-9A-Fa-f]{2}")
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")
# Decoded, these would change how the path splits or resolves; %25 is how double encoding starts.
_REFUSED_ESCAPES = {b"/": "an encoded '/'", b"\\": "an encoded '\\'", b".": "an encoded '.'", b"%": "double encoding"}
# Kept as they are when the path is encoded again for the provider (RFC 3986 pchar).
_PCHAR_SAFE = "!$&'()*+,;=:@-._~"


class InvalidPath(ValueError):
    """The path is not in canonical form; the message says what is wrong with it."""


@frozen
class Route:
    provider: str
    rest: str  # canonical, decoded path below the provider's base URL ("chat/completions")
    workflow: str | None

    @property
    def upstream_path(self) -> str:
        """`rest` percent-encoded again for the wire: the one spelling the provider sees."""
        return "/".join(quote(segment, safe=_PCHAR_SAFE) for segment in self.rest.split("/")) if self.rest else ""


def canonical_segments(raw_path: bytes) -> list[str]:
    """The decoded segments of a raw request path, or InvalidPath. A single trailing slash is dropped."""
    if not raw_path.startswith(b"/"):
        raise InvalidPath("the path must start with '/'")
    if _CONTROL.search(raw_path):
        raise InvalidPath("the path holds a control character")
    if b"\\" in raw_path:
        raise InvalidPath("the path holds a backslash")
    for m in _ESCAPE.finditer(raw_path):
        digits = m.group(1)
        if not _HEX.fullmatch(digits):
            raise InvalidPath("the path holds a '%' that is not a percent-escape")
        value = bytes.fromhex(digits.decode())
        if value in _REFUSED_ESCAPES:
            raise InvalidPath(f"the path holds {_REFUSED_ESCAPES[value]} ({m.group().decode()})")
        if value[0] < 0x20 or value[0] == 0x7F:
            raise InvalidPath(f"the path holds an encoded control character ({m.group().decode()})")
    try:
        decoded = _unescape(raw_path).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidPath("the path is not UTF-8 once decoded") from None
    if decoded == "/":
        return []
    parts = decoded[1:].split("/")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()  # "/openai/chat/completions/" names the same endpoint
    for part in parts:
        if part == "":
            raise InvalidPath("the path holds an empty segment ('//')")
        if part in (".", ".."):
            raise InvalidPath(f"the path holds a '{part}' segment")
    return parts


def _unescape(raw: bytes) -> bytes:
    return _ESCAPE.sub(lambda m: bytes.fromhex(m.group(1).decode()), raw)


def parse_route(raw_path: bytes, default_provider: str, default_base_url: str) -> Route | None:
    """/{provider}/{rest}, /w/{workflow}/{provider}/{rest}, /v1/{rest} (default provider); None: no route.
    Raises InvalidPath for a path not in canonical form."""
    parts = canonical_segments(raw_path)
    if not parts or not parts[0]:
        return None
    if parts[0] == "w":
        if len(parts) < 3:
            return None
        return Route(parts[2], "/".join(parts[3:]), parts[1])
    if parts[0] == "v1":
        # Bare /v1/...: a base URL that already ends in /v1 must not get a second one.
        rest = parts[1:] if default_base_url.rstrip("/").endswith("/v1") else parts
        return Route(default_provider, "/".join(rest), None)
    return Route(parts[0], "/".join(parts[1:]), None)


ROUTES_KEPT = 256  # routes of raw paths kept; when full, the cache starts afresh
ROUTE_KEPT_BYTES = 512  # a longer path is parsed each time, never kept


class Routes:
    """The routes of one config's paths, and their endpoints: calls repeat a few paths, so the routes of short
    ones are kept, at most ROUTES_KEPT (a new config gets new Routes)."""

    def __init__(self, config: Config) -> None:
        self.default = config.server.default_provider
        provider = config.providers.get(self.default)
        self.default_base_url = provider.base_url if provider else ""
        self._kept: dict[tuple[bytes, str], tuple[Route | None, Endpoint]] = {}

    def find(self, raw_path: bytes, method: str) -> tuple[Route | None, Endpoint]:
        """The route (None: no route) and the endpoint for this method; InvalidPath for a path not in canonical
        form."""
        found = self._kept.get((raw_path, method))
        if found is None:
            route = parse_route(raw_path, self.default, self.default_base_url)
            found = route, classify(route.rest if route else "", method)
            if route is not None and len(raw_path) <= ROUTE_KEPT_BYTES:
                if len(self._kept) >= ROUTES_KEPT:
                    self._kept.clear()
                self._kept[(raw_path, method)] = found
        return found
