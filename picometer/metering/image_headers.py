"""An image's width and height, read from its first bytes: raw, bare base64 or a data URL. Pure.

Only a bounded prefix is ever decoded or walked, so a huge image costs no more to size than a small one, and
bytes that are not a PNG, JPEG, GIF or WebP header (or are cut short) give None, never an error.

    image_size(head)       width and height from the first bytes of a PNG, JPEG, GIF or WebP
    base64_size(b64)       the same from bare base64 (Anthropic's source.data), decoding a bounded prefix
    data_url_size(url)     the same from a data:image/...;base64, URL
    is_image_data(s)       whether a string is an inline image (a data:image/ URL)
"""

from __future__ import annotations

import base64

Size = tuple[int, int]

B64_PREFIX_CHARS = 1 << 17  # 96 KiB of image: past the EXIF thumbnail and ICC profile of most photos
_DATA_URL_HEADER = 256  # the comma of a data URL is looked for this far in, no further

# ------------------------------------------------------------------------------------------ image headers


def image_size(head: bytes) -> Size | None:
    """Width and height from the first bytes of a PNG, JPEG, GIF or WebP; None when not one or cut short."""
    for reader in (_png_size, _jpeg_size, _gif_size, _webp_size):
        size = reader(head)
        if size is not None:
            return size
    return None


def _positive(width: int, height: int) -> Size | None:
    return (width, height) if width > 0 and height > 0 else None


def _png_size(head: bytes) -> Size | None:
    if len(head) < 24 or not head.startswith(b"\x89PNG\r\n\x1a\n") or head[12:16] != b"IHDR":
        return None
    return _positive(int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big"))


def _gif_size(head: bytes) -> Size | None:
    if len(head) < 10 or head[:6] not in (b"GIF87a", b"GIF89a"):
        return None
    return _positive(int.from_bytes(head[6:8], "little"), int.from_bytes(head[8:10], "little"))


def _webp_size(head: bytes) -> Size | None:
    if len(head) < 30 or head[:4] != b"RIFF" or head[8:12] != b"WEBP":
        return None
    chunk = head[12:16]
    if chunk == b"VP8 " and head[23:26] == b"\x9d\x01\x2a":  # lossy: 14-bit sizes after the start code
        return _positive(int.from_bytes(head[26:28], "little") & 0x3FFF, int.from_bytes(head[28:30], "little") & 0x3FFF)
    if chunk == b"VP8L" and head[20] == 0x2F:  # lossless: 14-bit width - 1, then height - 1
        bits = int.from_bytes(head[21:25], "little")
        return (1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF))
    if chunk == b"VP8X":  # extended: 24-bit canvas width - 1, then height - 1
        return (1 + int.from_bytes(head[24:27], "little"), 1 + int.from_bytes(head[27:30], "little"))
    return None


_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # frame headers; C4 DHT, C8 JPG, CC DAC are not
_NO_LENGTH = frozenset({0x01, 0xD8, *range(0xD0, 0xD8)})  # TEM, SOI, RST0-7 carry no length field


def _u16be(head: bytes, at: int) -> int:
    return int.from_bytes(head[at : at + 2], "big")


def _jpeg_size(head: bytes) -> Size | None:
    """Walks the segments to the first frame header; each step moves forward, so it ends within len(head)."""
    if not head.startswith(b"\xff\xd8"):
        return None
    pos = 2
    while pos + 4 <= len(head):
        if head[pos] != 0xFF:
            return None
        marker = head[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
        elif marker in _NO_LENGTH:
            pos += 2
        elif marker in (0xD9, 0xDA):  # end of image, or scan data before any frame header
            return None
        elif marker in _SOF:
            if pos + 9 > len(head):
                return None
            return _positive(_u16be(head, pos + 7), _u16be(head, pos + 5))  # precision, height, then width
        else:
            length = _u16be(head, pos + 2)
            if length < 2:
                return None
            pos += 2 + length
    return None


# ------------------------------------------------------------------------------------------- base64 data


def is_image_data(s: str) -> bool:
    """An inline image: a data:image/ URL (of any encoding)."""
    return s[:11].lower() == "data:image/"


def data_url_size(url: str) -> Size | None:
    """The size of a data:image/...;base64, URL's image, from a bounded prefix of its data."""
    if not is_image_data(url):
        return None
    comma = url.find(",", 0, _DATA_URL_HEADER)
    if comma < 0 or ";base64" not in url[:comma].lower():
        return None
    return _b64_prefix_size(url, comma + 1)


def base64_size(b64: str) -> Size | None:
    """The size of a base64-encoded image, from a bounded prefix: the rest is never decoded."""
    return _b64_prefix_size(b64, 0)


def _b64_prefix_size(text: str, start: int) -> Size | None:
    chunk = "".join(text[start : start + B64_PREFIX_CHARS].split())  # MIME base64 may wrap its lines
    chunk = chunk[: len(chunk) - len(chunk) % 4]
    try:
        head = base64.b64decode(chunk, validate=True)
    except ValueError:  # binascii.Error, and non-ASCII text
        return None
    return image_size(head)
