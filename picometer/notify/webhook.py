"""A generic webhook (Home Assistant, n8n, your own): POST the alert's fields as JSON, signed with
`X-Picometer-Signature: sha256=<lowercase hex HMAC-SHA256 of the raw body>` when a secret is set."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC
from typing import Any

from picometer.notify.note import Address, Note, Post
from picometer.record import rfc3339_ms

SIGNATURE = "X-Picometer-Signature"
FIX = "check [notify.webhook].url, and [notify.webhook].secret against what the receiver expects"


def fields(note: Note, message_id: int) -> dict[str, Any]:
    """What a receiver gets; `id` is the same on a repeated delivery (a crash between send and ack)."""
    out: dict[str, Any] = {
        "id": message_id,
        "kind": note.kind,
        "severity": str(note.severity),
        "key": note.key,
        "scope": note.scope,
        "workflow": note.workflow,
        "title": note.title,
        "message": note.message,
        "text": note.text(),
        "ts": rfc3339_ms(note.at.astimezone(UTC)),
        "over": note.over,
    }
    if note.amounts:
        out["amounts"] = note.amounts
    if note.dropped:
        out["dropped"] = note.dropped
    return out


def post(note: Note, to: Address, message_id: int) -> Post:
    body = json.dumps(fields(note, message_id), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    headers = {"Content-Type": "application/json"}
    if to.secret:
        headers[SIGNATURE] = signature(to.secret, body)
    return Post(to.url, headers, body)


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
