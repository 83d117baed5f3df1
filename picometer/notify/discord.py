"""Discord (https://discord.com/developers/docs/resources/webhook#execute-webhook): POST the webhook URL with
JSON `content` (at most 2,000 characters), no mention parsed; 204 when posted."""

from __future__ import annotations

import json
import re

from picometer.notify.note import ICON, Address, Note, Post, cut, utf16_units

CONTENT_MAX = 2000  # Discord's limit, counted as JavaScript counts (UTF-16)
FIX = (
    "the webhook was deleted or its URL is wrong: make one in the Discord channel's settings "
    "(Integrations, Webhooks) and put its URL in [notify.discord].webhook_url"
)
_MARKDOWN = re.compile(r"([\\*_~`|>\[\]()])")  # and link syntax: a name cannot become a disguised link


def post(note: Note, to: Address, message_id: int) -> Post:
    content = f"{ICON[note.severity]} **{escape(note.title)}**\n{escape(note.text())}"
    body = {"content": cut(content, CONTENT_MAX, utf16_units), "allowed_mentions": {"parse": []}}
    return Post(to.url, {"Content-Type": "application/json"}, json.dumps(body, ensure_ascii=False).encode("utf-8"))


def escape(text: str) -> str:
    """Text shown as written: `daily_digest_v2` must not turn into italics."""
    return _MARKDOWN.sub(r"\\\1", text)
