"""Gotify (https://gotify.net/docs/): POST {url}/message with JSON title, message and priority; the application
token in the `X-Gotify-Key` header (never in the query string, where proxies log it)."""

from __future__ import annotations

import json

from picometer.alert import Severity
from picometer.notify.note import Address, Note, Post

# Gotify's Android client: 1-3 an icon, 4-7 an icon and a sound, 8-10 an icon, a sound and vibration.
PRIORITY = {Severity.CRITICAL: 8, Severity.WARNING: 5, Severity.INFO: 2}
FIX = "check [notify.gotify].url (the server's base URL) and [notify.gotify].token (an application token)"


def post(note: Note, to: Address, message_id: int) -> Post:
    body = {
        "title": note.title,
        "message": note.text(),
        "priority": PRIORITY[note.severity],
        "extras": {"client::display": {"contentType": "text/plain"}},
    }
    headers = {"Content-Type": "application/json", "X-Gotify-Key": to.secret}
    return Post(f"{to.url.rstrip('/')}/message", headers, json.dumps(body, ensure_ascii=False).encode("utf-8"))
