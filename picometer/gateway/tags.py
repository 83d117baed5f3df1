"""Who made a call: workflow, env, tenant, prompt version. Virtual key > path > header > untagged."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote

from picometer.config import Config
from picometer.frozen import frozen

UNTAGGED = "untagged"
MAX_TAG_CHARS = 256  # longer names are refused before this (gateway.bounds); records keep at most this


@frozen
class Tags:
    workflow: str
    env: str
    tenant: str | None
    prompt_version: str | None
    correlation_id: str | None


@dataclass(frozen=True, slots=True)
class KeyMatch:
    workflow: str | None  # None: a [server].client_keys key, not tied to a workflow


class Keyring:
    """Client keys by sha256 digest, so the config may hold either the key or only its digest."""

    def __init__(self, config: Config) -> None:
        self._by_digest: dict[str, KeyMatch] = {}
        for key in config.server.client_keys:
            self._by_digest[_digest(key)] = KeyMatch(None)
        for name, workflow in config.workflows.items():
            for key in workflow.keys:
                self._by_digest[_digest(key)] = KeyMatch(name)
        self.required = bool(config.server.client_keys) or not _loopback(config)

    def match(self, presented: str | None) -> KeyMatch | None:
        if not presented or not self._by_digest:
            return None
        return self._by_digest.get(hashlib.sha256(presented.encode("utf-8", "surrogateescape")).hexdigest())


def _loopback(config: Config) -> bool:
    from picometer.config import is_loopback

    return is_loopback(config.server.host)


def _digest(key: str) -> str:
    return key[7:] if key.startswith("sha256:") else hashlib.sha256(key.encode()).hexdigest()


def presented_key(headers: Mapping[str, str], query: bytes = b"") -> str | None:
    """The key the client sent, the way any SDK sends it: a Bearer token, x-api-key, x-goog-api-key, or
    Gemini's ?key= query parameter."""
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return headers.get("x-api-key") or headers.get("x-goog-api-key") or query_key(query)


# Gemini's other way to send the key: the literal parameter name `key`, read here and swapped upstream
# (forward.upstream_query) by this one pattern, so both see the same parameter.
QUERY_KEY = re.compile(rb"(^|&)key=([^&]*)")


def query_key(query: bytes) -> str | None:
    """The value of a `key=` query parameter, or None."""
    m = QUERY_KEY.search(query)
    return unquote(m.group(2).decode("latin-1")) or None if m else None


def clean_tag(raw: str | None) -> str | None:
    """Printable text, no control characters, bounded length; emoji and non-ASCII kept."""
    if raw is None:
        return None
    # Printable text has no control or format characters: only other text is walked character by character.
    text = (raw if raw.isprintable() else "".join(ch for ch in raw if unicodedata.category(ch)[0] != "C")).strip()
    return text[:MAX_TAG_CHARS] or None


def resolve_tags(headers: Mapping[str, str], path_workflow: str | None, key: KeyMatch | None, config: Config) -> Tags:
    get = headers.get
    workflow = (
        (key.workflow if key else None)
        or clean_tag(path_workflow)
        or clean_tag(get("x-picometer-workflow"))
        or UNTAGGED
    )
    configured = config.workflows.get(workflow)
    env = clean_tag(get("x-picometer-env")) or (configured.env if configured else "prod")
    # Most calls send none of these: an absent one costs no call.
    tenant, version, correlation = get("x-picometer-tenant"), get("x-picometer-prompt-version"), get("x-request-id")
    return Tags(
        workflow,
        env,
        None if tenant is None else clean_tag(tenant),
        None if version is None else clean_tag(version),
        None if correlation is None else clean_tag(correlation),
    )
