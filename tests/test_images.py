"""Images in requests: sizes read from real headers, each provider's formula from above, bounded work."""

from __future__ import annotations

import base64
import random
import struct
import zlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from picometer.metering.image_headers import B64_PREFIX_CHARS, base64_size, data_url_size, image_size, is_image_data
from picometer.metering.images import (
    MAX_IMAGES,
    anthropic_image_tokens,
    image_tokens,
    max_image_tokens,
    openai_image_tokens,
    request_images,
)
from picometer.metering.usage import request_text_bytes

# ------------------------------------------------------------------------------------- image builders


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width: int, height: int, idat: bytes | None = None) -> bytes:
    """A real PNG: RGB rows of zeros (or the given IDAT bytes, for large sizes)."""
    if idat is None:
        idat = zlib.compress(b"".join(b"\x00" + bytes(3 * width) for _ in range(height)))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def gif(width: int, height: int) -> bytes:
    return b"GIF89a" + struct.pack("<HHBBB", width, height, 0, 0, 0) + b",\x00\x00\x00\x00" + b";"


def _riff(chunk: bytes, body: bytes) -> bytes:
    data = chunk + struct.pack("<I", len(body)) + body
    return b"RIFF" + struct.pack("<I", len(data) + 4) + b"WEBP" + data


def webp_lossy(width: int, height: int) -> bytes:
    return _riff(b"VP8 ", b"\x10\x02\x00" + b"\x9d\x01\x2a" + struct.pack("<HH", width, height) + bytes(10))


def webp_lossless(width: int, height: int) -> bytes:
    return _riff(b"VP8L", b"\x2f" + struct.pack("<I", (width - 1) | (height - 1) << 14) + bytes(10))


def webp_extended(width: int, height: int) -> bytes:
    return _riff(b"VP8X", bytes(4) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little"))


def _segment(marker: int, body: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body


def jpeg(width: int, height: int, sof: int = 0xC0, before: bytes = b"") -> bytes:
    """SOI, APP0, `before`, DQT, a DHT whose bytes would read as a size if taken for a frame, SOF, SOS, EOI."""
    app0 = _segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
    dqt = _segment(0xDB, b"\x00" + bytes(range(64)))
    dht = _segment(0xC4, b"\x00\x12\x34\x56\x78" + bytes(12))
    frame = _segment(sof, struct.pack(">BHHB", 8, height, width, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01")
    scan = _segment(0xDA, b"\x03\x01\x00\x02\x11\x03\x11\x00\x3f\x00") + bytes(32)
    return b"\xff\xd8" + app0 + before + dqt + dht + frame + scan + b"\xff\xd9"


def exif(size: int) -> bytes:
    return _segment(0xE1, b"Exif\x00\x00" + bytes(size - 6))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def data_url(data: bytes, media: str = "image/png") -> str:
    return f"data:{media};base64,{b64(data)}"


def big_png(width: int, height: int, target_chars: int) -> bytes:
    """A real PNG header followed by random IDAT bytes: about target_chars once base64-encoded."""
    return png(width, height, random.Random(7).randbytes(target_chars * 3 // 4))


OPENAI_MODELS = [
    "gpt-4o",
    "gpt-4o-2024-08-06",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-4.1-nano",
    "o4-mini",
    "o3",
    "gpt-5",
    "gpt-5-mini",
    "computer-use-preview",
    "gpt-5.4",
    "some-unknown-model",
    "",
]
CLAUDE_MODELS = [
    "claude-3-5-sonnet-20241022",
    "claude-sonnet-4-5",
    "claude-opus-4-6",
    "claude-opus-4-7",
    "claude-sonnet-5",
    "glm-4.6",
]
DETAILS = ["low", "high", "auto", "original", "bogus"]


# ------------------------------------------------------------------------------------------- headers


@pytest.mark.parametrize("size", [(1, 1), (3, 2), (640, 480), (1920, 1080), (4032, 3024), (16383, 9)])
@pytest.mark.parametrize("build", [png, gif, webp_lossy, webp_lossless, webp_extended, jpeg])
def test_sizes_read_back_from_real_headers(build: Any, size: tuple[int, int]) -> None:
    width, height = size
    if build is png and width * height > 10**6:
        data = png(width, height, b"not really compressed")  # the header is what is read
    else:
        data = build(width, height)
    assert image_size(data) == size


def test_png_of_real_pixels_and_huge_sizes() -> None:
    assert image_size(png(5, 7)) == (5, 7)
    assert zlib.decompress(png(5, 7)[41:-16]) == b"".join(b"\x00" + bytes(15) for _ in range(7))  # a real image
    assert image_size(png(100_000, 200_000, b"")) == (100_000, 200_000)
    assert image_size(webp_extended(1 << 24, 1 << 24)) == (1 << 24, 1 << 24)


@pytest.mark.parametrize("sof", [0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC7, 0xC9, 0xCB, 0xCD, 0xCF])
def test_jpeg_frame_headers_of_every_kind(sof: int) -> None:
    assert image_size(jpeg(800, 600, sof=sof)) == (800, 600)


def test_jpeg_skips_tables_fill_bytes_and_markers_without_length() -> None:
    # DHT (C4), JPG (C8) and DAC (CC) sit in the C0..CF range but are not frame headers.
    not_frames = _segment(0xC8, b"\x08\x00\x10\x00\x20") + _segment(0xCC, b"\x08\x00\x10\x00\x20")
    assert image_size(jpeg(321, 123, before=not_frames)) == (321, 123)
    assert image_size(jpeg(321, 123, before=b"\xff\xff\xff" + _segment(0xFE, b"a comment"))) == (321, 123)
    assert image_size(jpeg(321, 123, before=b"\xff\x01\xff\xd0")) == (321, 123)  # TEM, RST0


def test_jpeg_frame_after_a_large_exif_block() -> None:
    photo = jpeg(4032, 3024, before=exif(60_000) + _segment(0xE2, bytes(60_000)))
    assert image_size(photo) == (4032, 3024)  # the walk jumps over the segments
    # Its frame header lies past the decoded prefix of base64: the size is unknown, never guessed.
    assert len(photo) * 4 // 3 > B64_PREFIX_CHARS
    assert base64_size(b64(photo)) is None
    assert base64_size(b64(jpeg(4032, 3024, before=exif(30_000)))) == (4032, 3024)


def test_jpeg_without_frame_or_with_zero_height() -> None:
    assert image_size(b"\xff\xd8" + _segment(0xDA, bytes(8)) + b"\xff\xd9") is None
    assert image_size(b"\xff\xd8\xff\xd9") is None
    assert image_size(jpeg(100, 0)) is None  # height defined later by a DNL marker: unknown
    assert image_size(b"\xff\xd8" + b"\xff\xe0\x00\x01" + bytes(20)) is None  # a length below 2


@pytest.mark.parametrize("build", [png, gif, webp_lossy, webp_lossless, webp_extended, jpeg])
def test_truncated_headers_give_none(build: Any) -> None:
    data = build(300, 200)
    needed = next(n for n in range(len(data) + 1) if image_size(data[:n]) == (300, 200))
    assert all(image_size(data[:n]) is None for n in range(needed))


@pytest.mark.parametrize(
    "garbage",
    [b"", b"\x89PNG", b"GIF89a", b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"\xff\xd8", b"\xff\xd8\xff", b"hello", bytes(100)],
)
def test_garbage_headers_give_none(garbage: bytes) -> None:
    assert image_size(garbage) is None


_PREFIXES = [
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR",
    b"\xff\xd8",
    b"\xff\xd8\xff",
    b"GIF87a",
    b"RIFF\x00\x00\x00\x00WEBP",
]


@given(st.binary(max_size=300))
def test_image_size_never_raises_on_arbitrary_bytes(data: bytes) -> None:
    size = image_size(data)
    assert size is None or (size[0] > 0 and size[1] > 0)


@given(st.sampled_from(_PREFIXES), st.binary(max_size=300))
def test_image_size_never_raises_after_a_real_signature(prefix: bytes, tail: bytes) -> None:
    size = image_size(prefix + tail)
    assert size is None or (size[0] > 0 and size[1] > 0)


# ------------------------------------------------------------------------------------------ base64


def test_base64_and_data_urls() -> None:
    assert base64_size(b64(png(64, 48))) == (64, 48)
    assert data_url_size(data_url(png(64, 48))) == (64, 48)
    assert data_url_size(data_url(jpeg(10, 20), "image/jpeg")) == (10, 20)
    assert data_url_size("DATA:IMAGE/WEBP;name=a.webp;BASE64," + b64(webp_lossy(9, 8))) == (9, 8)
    wrapped = "\n".join(b64(png(64, 48))[i : i + 76] for i in range(0, 200, 76))  # MIME line breaks
    assert base64_size(wrapped) == (64, 48)
    assert base64_size(b64(png(64, 48)).rstrip("=")) == (64, 48)  # missing padding


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/cat.png",
        "data:image/svg+xml,<svg xmlns='http://www.w3.org/2000/svg'/>",  # not base64
        "data:text/plain;base64," + b64(png(4, 4)),  # not an image
        "data:image/png;base64" + "A" * 300,  # no comma in the header
        "data:image/png;base64,%%%%" + b64(png(4, 4)),  # invalid base64
        "data:image/png;base64," + b64(b"just some text, not an image at all"),
        "data:image/png;base64,iVBORw0KGgo",  # truncated
        "data:image/png;base64,ünïcødé",
        "",
    ],
)
def test_data_urls_of_unknown_size(url: str) -> None:
    assert data_url_size(url) is None


@given(st.text(max_size=200))
def test_base64_readers_never_raise(text: str) -> None:
    base64_size(text)
    data_url_size(text)
    data_url_size("data:image/png;base64," + text)


def test_only_a_bounded_prefix_is_decoded() -> None:
    picture = png(1920, 1080, bytes(30))
    header = b64(picture + bytes(-len(picture) % 3))  # 3n bytes: no padding before the rest
    # 20 MB whose tail is not base64 at all: a whole decode would fail, a prefix decode reads the size.
    huge = header + "A" * (B64_PREFIX_CHARS - len(header)) + "!*" * 10_000_000
    assert len(huge) > 20_000_000
    assert base64_size(huge) == (1920, 1080) == base64_size(huge[:B64_PREFIX_CHARS])
    assert data_url_size("data:image/png;base64," + huge) == (1920, 1080)


def test_is_image_data() -> None:
    assert is_image_data("data:image/png;base64,AAAA")
    assert is_image_data("Data:Image/jpeg;base64,AAAA")
    assert not is_image_data("data:text/plain,hello")
    assert not is_image_data("https://example.com/a.png")
    assert not is_image_data("")


# ---------------------------------------------------------------------------------------- formulas


def test_openai_tile_formula_matches_the_doc_examples() -> None:
    # images-vision, "Calculating costs": a 1024 x 1024 image in detail high costs 765 tokens (4 tiles),
    # a 2048 x 4096 one 1,105 (scaled to 768 x 1536: 6 tiles), any image in detail low 85.
    assert openai_image_tokens(1024, 1024, "gpt-4o", "high") == 765
    assert openai_image_tokens(2048, 4096, "gpt-4o", "high") == 1105
    assert openai_image_tokens(4096, 8192, "gpt-4o", "low") == 85
    assert openai_image_tokens(1024, 1024, "gpt-4o", "auto") == 765  # auto is billed as high
    assert openai_image_tokens(512, 512, "gpt-4o-2024-08-06", "high") == 255  # never scaled up
    # The same tiles at each model's rates from the doc's table.
    assert openai_image_tokens(1024, 1024, "gpt-4o-mini", "high") == 2833 + 4 * 5667
    assert openai_image_tokens(1024, 1024, "gpt-4o-mini-search-preview-2025-03-11", "low") == 2833
    assert openai_image_tokens(1024, 1024, "o3", "high") == 75 + 4 * 150
    assert openai_image_tokens(1024, 1024, "gpt-5-chat-latest", "high") == 70 + 4 * 140
    assert openai_image_tokens(1024, 1024, "computer-use-preview", "high") == 65 + 4 * 129


def test_openai_patch_formula_matches_the_doc_examples() -> None:
    # images-vision, "Calculating costs": 1024 x 1024 is 32 x 32 = 1,024 patches, times 1.62 on gpt-4.1-mini.
    assert openai_image_tokens(1024, 1024, "gpt-4.1-mini", "low") == 1659  # detail is ignored
    assert openai_image_tokens(1024, 1024, "gpt-4.1-nano") == 2520  # ceil(1024 x 2.46)
    assert openai_image_tokens(1024, 1024, "o4-mini-2025-04-16") == 1762  # ceil(1024 x 1.72)
    # 1800 x 2400 needs 4,275 patches: the doc scales it to 1,452; the bound is the 1,536 cap (billed in practice).
    tokens = openai_image_tokens(1800, 2400, "gpt-4.1-mini")
    assert 2353 <= tokens <= 2489


def test_openai_model_names_resolve_to_their_family() -> None:
    for name in ("openai/gpt-4o", "GPT-4o", "ft:gpt-4o-2024-08-06:acme::abc123", "gpt-4o-2024-11-20"):
        assert openai_image_tokens(1024, 1024, name, "high") == 765
    assert max_image_tokens("openai", "gpt-4o", "high") == 85 + 8 * 170


def test_unknown_openai_models_take_the_largest_regime() -> None:
    # gpt-5.4 and later size by 32 px patches at 1.2 tokens each; "original" (gpt-5.6's default) keeps the
    # image as sent up to 30,000 patches, so a URL image of unknown size counts at 36,000 tokens.
    assert openai_image_tokens(4000, 3000, "gpt-5.6", "auto") == 14_100  # 125 x 94 patches x 1.2
    assert openai_image_tokens(4000, 3000, "gpt-5.6", "high") == 3779  # 1,536 patches x 2.46
    assert max_image_tokens("openai", "gpt-5.6", "auto") == 36_000
    assert max_image_tokens("openai", "gpt-5.6", "high") == 3779
    assert max_image_tokens("openai", "", "low") == 3779


@given(
    st.integers(1, 20_000),
    st.integers(1, 20_000),
    st.sampled_from(["low", "high", "auto", "original"]),
    st.sampled_from([m for m in OPENAI_MODELS if "gpt-4o-mini" not in m]),
)
def test_unknown_models_never_below_a_known_one(width: int, height: int, detail: str, model: str) -> None:
    # gpt-4o-mini is the one exception: its per-token price is 33x lower, so its token counts are higher.
    known = openai_image_tokens(width, height, model, detail)
    assert openai_image_tokens(width, height, "a-new-model", detail) >= known


def test_anthropic_formula_matches_the_doc_examples() -> None:
    # vision, "Calculate image costs": 1092 x 1092 px is ~1,590 tokens, 1000 x 1000 ~1,334, 200 x 200 ~54.
    assert anthropic_image_tokens(1092, 1092, "claude-sonnet-4-5") == 1590
    assert anthropic_image_tokens(1000, 1000, "claude-3-5-sonnet-20241022") == 1334
    # The current page counts 28 px patches: 200 px is covered by 8, so 64 (the larger, to stay above both).
    assert 54 <= anthropic_image_tokens(200, 200, "claude-sonnet-4-5") == 64
    # A large photo is scaled down: at most ~1,600 tokens before Claude 4.7, 4,784 from it on.
    assert anthropic_image_tokens(4032, 3024, "claude-sonnet-4-5") == 1600
    assert anthropic_image_tokens(4032, 3024, "claude-opus-4-7") == 4784
    assert anthropic_image_tokens(1092, 1092, "claude-opus-4-7") == 1590


@pytest.mark.parametrize(
    ("model", "most"),
    [
        ("claude-3-5-sonnet-20241022", 1600),
        ("claude-3-opus-20240229", 1600),
        ("claude-3-7-sonnet-latest", 1600),
        ("claude-sonnet-4-20250514", 1600),
        ("claude-opus-4-1-20250805", 1600),
        ("claude-haiku-4-5-20251001", 1600),
        ("claude-opus-4-6", 1600),
        ("us.anthropic.claude-3-7-sonnet-20250219-v1:0", 1600),
        ("claude-3-5-sonnet-v2@20241022", 1600),
        ("anthropic/claude-3.5-sonnet", 1600),
        ("claude-opus-4-7", 4784),
        ("claude-sonnet-5", 4784),
        ("claude-latest", 4784),  # no version: the higher tier
        ("glm-4.6", 4784),  # another host speaking Anthropic's API
        ("", 4784),
    ],
)
def test_anthropic_tier_per_model(model: str, most: int) -> None:
    assert max_image_tokens("anthropic", model) == most


def test_claude_through_an_openai_shaped_endpoint_is_billed_as_claude() -> None:
    assert image_tokens((1092, 1092), "openai", "claude-sonnet-4-5", "high") == 1590
    assert max_image_tokens("openai", "anthropic/claude-sonnet-4.5") == 1600


@given(st.integers(1, 20_000), st.integers(1, 20_000), st.sampled_from(DETAILS), st.sampled_from(OPENAI_MODELS))
def test_openai_formula_never_above_the_url_maximum(width: int, height: int, detail: str, model: str) -> None:
    assert 0 < openai_image_tokens(width, height, model, detail) <= max_image_tokens("openai", model, detail)


@given(st.integers(1, 20_000), st.integers(1, 20_000), st.sampled_from(CLAUDE_MODELS))
def test_anthropic_formula_never_above_the_url_maximum(width: int, height: int, model: str) -> None:
    assert 0 < anthropic_image_tokens(width, height, model) <= max_image_tokens("anthropic", model)


@given(
    st.integers(1, 5_000),
    st.integers(1, 5_000),
    st.integers(1, 8),
    st.sampled_from(DETAILS),
    st.sampled_from(OPENAI_MODELS + CLAUDE_MODELS),
)
def test_tokens_never_fall_as_an_image_grows_at_the_same_aspect(
    width: int, height: int, factor: int, detail: str, model: str
) -> None:
    # Each formula scales by one factor per image (fit, shortest side, long edge), so at a fixed aspect the
    # billed size, and the tiles or patches covering it, can only grow. Widening alone can shrink a scaled
    # image's height: that is not asserted.
    shape = "anthropic" if model in CLAUDE_MODELS else "openai"
    small = image_tokens((width, height), shape, model, detail)
    assert small <= image_tokens((width * factor, height * factor), shape, model, detail)


# ----------------------------------------------------------------------------------- request bodies


def anthropic_body(*blocks: dict[str, Any], model: str = "claude-sonnet-4-5") -> dict[str, Any]:
    return {"model": model, "max_tokens": 100, "messages": [{"role": "user", "content": list(blocks)}]}


def anthropic_image(data: bytes | str, media: str = "image/png") -> dict[str, Any]:
    text = data if isinstance(data, str) else b64(data)
    return {"type": "image", "source": {"type": "base64", "media_type": media, "data": text}}


def chat_body(*parts: dict[str, Any], model: str = "gpt-4o") -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": [{"type": "text", "text": "What?"}, *parts]}]}


def chat_image(url: str, detail: str | None = None) -> dict[str, Any]:
    inner: dict[str, Any] = {"url": url} if detail is None else {"url": url, "detail": detail}
    return {"type": "image_url", "image_url": inner}


def test_a_750_kb_png_in_an_anthropic_call_is_counted_as_an_image() -> None:
    picture = big_png(1920, 1080, 750_000)
    body = anthropic_body(anthropic_image(picture), {"type": "text", "text": "Describe it."})
    tokens, chars = request_images(body, "anthropic", "claude-sonnet-4-5")
    assert tokens == 1600  # scaled to 1568 x 882 and capped at the tier's ~1,600 tokens
    assert chars == len(b64(picture)) > 740_000
    assert request_text_bytes(body) - chars < 100  # what is left to measure as text: the prompt's words


def test_a_750_kb_png_in_an_openai_chat_call_is_counted_as_an_image() -> None:
    url = data_url(big_png(1920, 1080, 750_000))
    body = chat_body(chat_image(url, "high"))
    tokens, chars = request_images(body, "openai", "gpt-4o")
    assert tokens == 1105 <= max_image_tokens("openai", "gpt-4o")  # 1365 x 768: 3 x 2 tiles
    assert chars == len(url)
    assert request_text_bytes(body) - chars < 100
    low = chat_body(chat_image(url, "low"))
    assert request_images(low, "openai", "gpt-4o") == (85, len(url))


def test_a_20_mb_image_gives_the_same_count_as_its_prefix() -> None:
    picture = b64(big_png(800, 600, 1_000))
    huge = picture + "A" * (20_000_000 - len(picture))
    body = anthropic_body(anthropic_image(huge))
    tokens, chars = request_images(body, "anthropic", "claude-sonnet-4-5")
    prefix = anthropic_body(anthropic_image(huge[:B64_PREFIX_CHARS]))
    assert tokens == request_images(prefix, "anthropic", "claude-sonnet-4-5")[0]
    assert tokens == anthropic_image_tokens(800, 600, "claude-sonnet-4-5") == 640
    assert chars == 20_000_000


def test_anthropic_urls_files_and_tool_results() -> None:
    body = anthropic_body(
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}},
        {"type": "image", "source": {"type": "file", "file_id": "file_011"}},
        {
            "type": "tool_result",
            "tool_use_id": "toolu_1",
            "content": [{"type": "text", "text": "screenshot:"}, anthropic_image(png(100, 100))],
        },
    )
    tokens, chars = request_images(body, "anthropic", "claude-sonnet-4-5")
    assert tokens == 1600 + 1600 + anthropic_image_tokens(100, 100, "claude-sonnet-4-5")
    assert chars == len(b64(png(100, 100)))
    assert request_images(body, "anthropic", "claude-opus-4-7")[0] == 4784 * 2 + 16  # 4 x 4 patches


def test_openai_responses_parts() -> None:
    small = data_url(png(512, 512))
    body = {
        "model": "gpt-4o",
        "input": [
            {"role": "user", "content": [{"type": "input_image", "image_url": small, "detail": "high"}]},
            {"role": "user", "content": [{"type": "input_image", "file_id": "file-abc"}]},
            {"type": "computer_call_output", "output": {"type": "computer_screenshot", "image_url": small}},
        ],
    }
    tokens, chars = request_images(body, "openai", "gpt-4o")
    assert tokens == 255 + 1445 + 255
    assert chars == 2 * len(small)


def test_openai_chat_image_url_as_a_plain_string_and_by_https() -> None:
    small = data_url(png(512, 512))
    body = chat_body({"type": "image_url", "image_url": small}, chat_image("https://example.com/a.png", "low"))
    assert request_images(body, "openai", "gpt-4o") == (255 + 85, len(small))


def test_images_of_unknown_size_count_at_the_maximum() -> None:
    garbage = [
        b64(b"not an image, just text " * 10),  # valid base64, no known header
        "!!!! not base64 !!!!",  # invalid base64
        b64(png(300, 200))[:20],  # a truncated header
        b64(jpeg(300, 200, before=exif(60_000) + exif(60_000))),  # the frame header past the prefix
    ]
    for data in garbage:
        body = anthropic_body(anthropic_image(data))
        assert request_images(body, "anthropic", "claude-haiku-4-5") == (1600, len(data))
        url = "data:image/png;base64," + data
        assert request_images(chat_body(chat_image(url)), "openai", "gpt-4o") == (1445, len(url))
    malformed = anthropic_body({"type": "image", "source": "nope"}, {"type": "image"})
    assert request_images(malformed, "anthropic", "claude-haiku-4-5") == (3200, 0)


def test_data_urls_in_text_are_text() -> None:
    # A data URL pasted into a text part is billed as text: it stays in the text measurement.
    body = chat_body({"type": "text", "text": data_url(png(10, 10))})
    assert request_images(body, "openai", "gpt-4o") == (0, 0)
    assert request_images({"model": "gpt-4o", "input": data_url(png(10, 10))}, "openai", "gpt-4o") == (0, 0)


def test_only_prompt_fields_are_walked() -> None:
    body = {"metadata": {"x": chat_image(data_url(png(10, 10)))}, "messages": []}
    assert request_images(body, "openai", "gpt-4o") == (0, 0)
    assert request_images([], "openai", "gpt-4o") == (0, 0)  # type: ignore[arg-type]


def test_image_count_and_depth_are_bounded() -> None:
    tiny = data_url(png(10, 10))
    body = chat_body(*[chat_image(tiny, "high") for _ in range(MAX_IMAGES + 5)])
    tokens, chars = request_images(body, "openai", "gpt-4o")
    assert tokens == MAX_IMAGES * 255 + 5 * 1445  # past the limit: at the maximum, unread
    assert chars == (MAX_IMAGES + 5) * len(tiny)
    deep: Any = chat_image(tiny)
    for _ in range(100):
        deep = [deep]
    assert request_images({"messages": deep}, "openai", "gpt-4o") == (0, 0)  # left to the text measurement
    shallow: Any = chat_image(tiny)
    for _ in range(60):
        shallow = [shallow]
    assert request_images({"messages": shallow}, "openai", "gpt-4o") == (255, len(tiny))
