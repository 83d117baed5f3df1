"""What goes upstream and what comes back: URLs and headers."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import quote

import httpx

from picometer.config import ProviderConfig, Secret
from picometer.gateway.tags import QUERY_KEY

# Never forwarded in either direction: they describe one hop, not the message.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
# Recomputed by our HTTP client or server for the bytes they actually send.
_REQUEST_DROP = HOP_BY_HOP | {b"host", b"content-length", b"accept-encoding", b"expect", b"x-request-id"}
_RESPONSE_DROP = HOP_BY_HOP | {b"content-length", b"content-encoding", b"date", b"server"}
_AUTH = frozenset({b"authorization", b"x-api-key", b"x-goog-api-key"})


def upstream_url(base_url: str, path: str, query: bytes) -> str:
    """The base URL, then the canonical path below it: never outside it (the path has no dot segments)."""
    url = base_url.rstrip("/") + "/" + path
    return url + "?" + query.decode("latin-1") if query else url


def _connection_tokens(headers: Iterable[tuple[bytes, bytes]]) -> set[bytes]:
    """Headers named in Connection: are hop-by-hop too (RFC 9110 §7.6.1)."""
    named: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            named.update(t.strip().lower() for t in value.split(b","))
    return named


def has_query_key(query: bytes) -> bool:
    return QUERY_KEY.search(query) is not None


def upstream_query(query: bytes, key: Secret | None) -> bytes:
    """The client's query; a `key=` in it (Gemini's other way to send the key) carries the provider key."""
    if key is None or not has_query_key(query):
        return query
    value = quote(key.value, safe="").encode()
    return QUERY_KEY.sub(lambda m: m.group(1) + b"key=" + value, query)


def upstream_headers(
    client_headers: Iterable[tuple[bytes, bytes]],
    provider: ProviderConfig,
    key: Secret | None,
    shape: str | None = None,
    key_in_query: bool = False,
) -> list[tuple[bytes, bytes]]:
    """The client's headers minus ours and hop-by-hop ones; the provider key in place of the client's, the way
    the API called takes it (Anthropic's OpenAI-compatible endpoint takes a Bearer token, Messages x-api-key,
    Gemini x-goog-api-key unless the key travels in the query)."""
    client_headers = list(client_headers)
    drop = _REQUEST_DROP | _connection_tokens(client_headers)
    if key is not None:
        drop = drop | _AUTH
    out = [(n, v) for n, v in client_headers if (low := n.lower()) not in drop and not low.startswith(b"x-picometer-")]
    if key is not None:
        secret = key.value.encode()
        api = shape or provider.kind
        if api == "anthropic":
            out.append((b"x-api-key", secret))
        elif api == "gemini":
            if not key_in_query:
                out.append((b"x-goog-api-key", secret))
        else:
            out.append((b"authorization", b"Bearer " + secret))
    return out


def response_headers(upstream: httpx.Headers) -> list[tuple[bytes, bytes]]:
    raw = upstream.raw
    drop = _RESPONSE_DROP | _connection_tokens(raw)
    return [(n, v) for n, v in raw if n.lower() not in drop]


def timeouts_for(provider: ProviderConfig) -> dict[str, float]:
    """httpcore's per-request timeouts. Until the response starts, "read" is the first-byte wait (the provider
    has the whole request then); the caller sets it to timeout_s (the gap between chunks) after that."""
    return {
        "connect": provider.connect_timeout_s,
        "pool": provider.connect_timeout_s,
        "read": provider.first_byte_timeout_s,
        "write": provider.timeout_s,
    }
