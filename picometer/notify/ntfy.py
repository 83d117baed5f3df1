"""ntfy (https://docs.ntfy.sh/publish/): POST the message text to the topic URL; title, priority and tags in
headers; an access token as `Authorization: Bearer`."""

from __future__ import annotations

import base64

from picometer.alert import Severity
from picometer.notify.note import Address, Note, Post, cut, utf8_bytes

PRIORITY = {Severity.CRITICAL: "5", Severity.WARNING: "4", Severity.INFO: "3"}  # urgent, high, default
TAG = {Severity.CRITICAL: "rotating_light", Severity.WARNING: "warning", Severity.INFO: "information_source"}
MESSAGE_BYTES = 4096  # ntfy turns a longer message into an attachment
FIX = "check [notify.ntfy].url (the topic's URL) and [notify.ntfy].token (an access token that may publish to it)"


def post(note: Note, to: Address, message_id: int) -> Post:
    headers = {
        "Content-Type": "text/plain; charset=utf-8",
        "Title": header_text(note.title),
        "Priority": PRIORITY[note.severity],
        "Tags": f"{TAG[note.severity]},{note.kind}",  # emoji shortcodes show as icons, other tags as text
    }
    if to.secret:
        headers["Authorization"] = f"Bearer {to.secret}"
    return Post(to.url, headers, cut(note.text(), MESSAGE_BYTES, utf8_bytes).encode("utf-8"))


def header_text(text: str) -> str:
    """A header value ntfy reads as UTF-8 whatever the client sends: RFC 2047 base64 when not plain ASCII."""
    text = text[:200]
    if text.isascii() and text.isprintable():
        return text
    return f"=?UTF-8?B?{base64.b64encode(text.encode('utf-8')).decode('ascii')}?="
