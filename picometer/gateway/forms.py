"""The small text fields of a multipart/form-data body (model, n), without reading its files. Pure."""

from __future__ import annotations

import re

MAX_FIELDS = 64  # parts looked at; an upload has a handful
MAX_VALUE_BYTES = 1024  # longer values (prompts, files) are not what we read here
_NAME = re.compile(rb'\bname="([^"]{1,256})"')


def boundary_of(content_type: str) -> bytes | None:
    m = re.search(r'boundary="?([^";,]{1,200})"?', content_type)
    return m.group(1).encode("latin-1", "replace") if m else None


def form_fields(body: bytes, content_type: str) -> dict[str, str]:
    """Text fields of at most MAX_VALUE_BYTES that are not files; {} when the body is not multipart."""
    boundary = boundary_of(content_type) if content_type.lower().startswith("multipart/form-data") else None
    if boundary is None:
        return {}
    fields: dict[str, str] = {}
    for part in body.split(b"--" + boundary)[1 : MAX_FIELDS + 1]:
        head, sep, value = part.partition(b"\r\n\r\n")
        if not sep or b"filename=" in head:
            continue
        name = _NAME.search(head)
        value = value.removesuffix(b"\r\n")
        if name is None or len(value) > MAX_VALUE_BYTES:
            continue
        fields[name.group(1).decode("utf-8", "replace")] = value.decode("utf-8", "replace")
    return fields
