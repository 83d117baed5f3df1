"""Images in a request, counted as the image tokens each provider bills for them, from above. Pure.

A base64 image in a prompt is billed by its pixel size, not by the length of its text: a 750 KB PNG costs
at most about 1,600 tokens on Claude Sonnet 4.5, not the 250,000 its text would measure. A reservation
needs the most a call can cost, so every count here is an upper bound of the provider's documented
formula, and an image whose size is not read (an https URL, which picometer never fetches; a file id; a
header it cannot parse) counts at the most one image can cost on that model.

    openai_image_tokens(w, h, model, detail)   OpenAI's formula for the model
    anthropic_image_tokens(w, h, model)        Anthropic's formula for the model
    max_image_tokens(shape, model, detail)     the most one image of unknown size can cost
    image_tokens(size, shape, model, detail)   the formula for the shape's provider, or the maximum for None
    request_images(body, shape, model)         (image tokens, characters of image data) of a whole request

`request_images` returns the characters of the base64 strings and data URLs of the image parts it found in
the prompt fields (`usage.PROMPT_FIELDS`), which `usage.request_text_bytes` also counts: subtract them from
that text measurement and add the image tokens. Use that count rather than `is_image_data` on every
string: a data URL pasted into a text part is billed as text. An image's size is read by `image_headers`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, NamedTuple

from picometer.metering.image_headers import Size, base64_size, data_url_size, is_image_data
from picometer.metering.usage import PROMPT_FIELDS

MAX_IMAGES = 1_000  # images sized from their headers in one request; any more count at the maximum
MAX_DEPTH = 64  # as deep as the request walk goes (the body's nesting is already bounded upstream)
DETAILS = frozenset({"low", "high", "auto", "original"})  # OpenAI's detail values; anything else is "auto"

# ------------------------------------------------------------------------------------------------ OpenAI
# platform.openai.com/docs/guides/images-vision, "Calculating costs", tile models: the image is scaled to
# fit a 2048 x 2048 square, then down until its shortest side is 768 px, then covered with 512 px tiles;
# tokens = base + per tile x tiles, and detail "low" costs the base alone.
TILE_FIT = 2048
TILE_SHORT_SIDE = 768
TILE = 512
MAX_TILES = 8  # 4 x 2: the long side ends at most 2048 px, the short side at most 768 px
# Same page, patch models: the image is covered with 32 x 32 px patches, scaled down to fit 1,536 patches
# when it needs more, and the patch count times a per-model multiplier is billed. Detail is ignored.
PATCH = 32
PATCH_BUDGET = 1536


@dataclass(frozen=True, slots=True)
class _Tiles:
    base: int  # the doc's "base tokens"
    per_tile: int  # the doc's "tile tokens"

    def tokens(self, width: int, height: int, detail: str) -> int:
        return self.base if detail == "low" else self.base + self.per_tile * _tile_count(width, height)

    def most(self, detail: str) -> int:
        return self.base if detail == "low" else self.base + self.per_tile * MAX_TILES


@dataclass(frozen=True, slots=True)
class _Patches:
    multiplier: Fraction
    budget: int  # patches billed at most: a larger image is scaled down to fit

    def tokens(self, width: int, height: int, detail: str) -> int:
        # min(raw, budget) bounds the doc's scale-down from above and equals it below the budget.
        return math.ceil(min(_patch_count(width, height), self.budget) * self.multiplier)

    def most(self, detail: str) -> int:
        return math.ceil(self.budget * self.multiplier)


_Regime = _Tiles | _Patches

_GPT_4O = _Tiles(85, 170)  # images-vision, "Calculating costs": 4o, 4.1, 4.5: 85 base, 170 per tile
_TILE_MODELS: dict[str, _Regime] = {
    "gpt-5": _Tiles(70, 140),  # gpt-5, gpt-5-chat-latest: 70 base, 140 per tile
    "gpt-5-chat-latest": _Tiles(70, 140),
    "gpt-4o": _GPT_4O,
    "chatgpt-4o-latest": _GPT_4O,
    "gpt-4.1": _GPT_4O,
    "gpt-4.5-preview": _GPT_4O,
    "gpt-4-turbo": _GPT_4O,
    "gpt-4o-mini": _Tiles(2833, 5667),  # 4o-mini: 2,833 base, 5,667 per tile (priced per token 33x lower)
    "o1": _Tiles(75, 150),  # o1, o1-pro, o3: 75 base, 150 per tile
    "o1-pro": _Tiles(75, 150),
    "o3": _Tiles(75, 150),
    "computer-use-preview": _Tiles(65, 129),  # computer-use-preview: 65 base, 129 per tile
}
_PATCH_MODELS: dict[str, _Regime] = {  # images-vision, "Calculating costs", the multiplier table
    "gpt-5-mini": _Patches(Fraction("1.62"), PATCH_BUDGET),
    "gpt-5-nano": _Patches(Fraction("2.46"), PATCH_BUDGET),
    "gpt-4.1-mini": _Patches(Fraction("1.62"), PATCH_BUDGET),
    "gpt-4.1-nano": _Patches(Fraction("2.46"), PATCH_BUDGET),
    "o4-mini": _Patches(Fraction("1.72"), PATCH_BUDGET),
}
# Any other model (gpt-5.2 and later, other hosts' models, a name we do not know) pays the largest of every
# regime: the 4o tiles, the largest multiplier above, and the sizing of developers.openai.com/api/docs/
# guides/images-vision for gpt-5.4 and later (1.2 tokens a patch; "high" fits 2,500 patches; "original", and
# gpt-5.6's default "auto", keep the image as sent and refuse it past 30,000 patches).
_UNKNOWN: tuple[_Regime, ...] = (
    _GPT_4O,
    _Patches(Fraction("2.46"), PATCH_BUDGET),
    _Patches(Fraction("1.2"), 2_500),
)
_UNKNOWN_ORIGINAL = (*_UNKNOWN, _Patches(Fraction("1.2"), 30_000))

# --------------------------------------------------------------------------------------------- Anthropic
# docs.anthropic.com/en/docs/build-with-claude/vision, "Calculate image costs": tokens = width x height / 750,
# after a scale-down so the long edge is at most 1,568 px and the image about 1.15 megapixels ("about
# 1,600 tokens" at most). The current page (platform.claude.com/docs/en/build-with-claude/vision) bills
# ceil(w / 28) x ceil(h / 28) patches instead, after a scale-down to a per-model tier. We take the larger of
# the two, rounded up, after scaling to the tier's long edge only, and cap it at the tier's maximum.
PIXELS_PER_TOKEN = 750
CLAUDE_PATCH = 28
STANDARD_EDGE = 1568  # models before Claude 4.7: long edge 1,568 px
STANDARD_MAX = 1600  # and "about 1,600 tokens" (the patch tier's 1,568 is below it)
HIGH_RES_EDGE = 2576  # Claude 4.7 and later, and any model we cannot date: long edge 2,576 px
HIGH_RES_MAX = 4784  # and 4,784 patches (3.75 megapixels)
_FIRST_HIGH_RES = (4, 7)


# ------------------------------------------------------------------------------------------ token counts


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _tile_count(width: int, height: int) -> int:
    scale = min(Fraction(1), Fraction(TILE_FIT, max(width, height)), Fraction(TILE_SHORT_SIDE, min(width, height)))
    return math.ceil(width * scale / TILE) * math.ceil(height * scale / TILE)


def _patch_count(width: int, height: int) -> int:
    return _ceil_div(width, PATCH) * _ceil_div(height, PATCH)


def _openai_name(model: str) -> str:
    """The model's family name: no router prefix, no fine-tune wrapping, no snapshot date."""
    name = model.strip().lower().rsplit("/", 1)[-1]
    name = name.removeprefix("ft:").split(":", 1)[0]  # ft:gpt-4o-2024-08-06:org::id
    return re.sub(r"-\d{4}-\d{2}-\d{2}$", "", name)


def _openai_regimes(model: str, detail: str) -> tuple[_Regime, ...]:
    name = _openai_name(model)
    known = _TILE_MODELS.get(name) or _PATCH_MODELS.get(name)
    if known is not None:
        return (known,)
    if name.startswith("gpt-4o-mini"):  # its variants (search, audio) share its rates, above any other
        return (_TILE_MODELS["gpt-4o-mini"],)
    return _UNKNOWN_ORIGINAL if detail in ("auto", "original") else _UNKNOWN


def _detail(value: Any) -> str:
    text = value.lower() if isinstance(value, str) else ""
    return text if text in DETAILS else "auto"


def openai_image_tokens(width: int, height: int, model: str, detail: str = "auto") -> int:
    """Tokens one image of this size costs on an OpenAI model, from above."""
    width, height, detail = max(width, 1), max(height, 1), _detail(detail)
    return max(regime.tokens(width, height, detail) for regime in _openai_regimes(model, detail))


def _claude_version(model: str) -> tuple[int, int] | None:
    """(major, minor) of claude-3-5-sonnet, claude-sonnet-4-5-20250929, anthropic.claude-opus-4-1-v1:0."""
    name = model.lower()
    at = name.find("claude-")
    if at < 0:
        return None
    parts = re.split(r"[-.@:_/]", name[at + 7 :])
    for i, part in enumerate(parts[:2]):  # the version comes first, or after the family name
        if part.isdigit() and len(part) <= 2 and int(part) > 0:
            minor = parts[i + 1] if i + 1 < len(parts) else ""
            return int(part), int(minor) if minor.isdigit() and len(minor) <= 2 else 0
    return None


def _claude_tier(model: str) -> tuple[int, int]:
    """(long edge, most tokens): the high-resolution tier unless the model is known to predate it."""
    version = _claude_version(model)
    if version is not None and version < _FIRST_HIGH_RES:
        return STANDARD_EDGE, STANDARD_MAX
    return HIGH_RES_EDGE, HIGH_RES_MAX


def anthropic_image_tokens(width: int, height: int, model: str) -> int:
    """Tokens one image of this size costs on a Claude model, from above."""
    width, height = max(width, 1), max(height, 1)
    edge, most = _claude_tier(model)
    scale = min(Fraction(1), Fraction(edge, max(width, height)))
    w, h = width * scale, height * scale
    patches = math.ceil(w / CLAUDE_PATCH) * math.ceil(h / CLAUDE_PATCH)
    return min(most, max(patches, math.ceil(w * h / PIXELS_PER_TOKEN)))


def _bills_as_anthropic(shape: str, model: str) -> bool:
    """Claude is billed by Anthropic's formula through OpenAI-shaped endpoints too (its compatibility API)."""
    return shape == "anthropic" or "claude" in model.lower()


def max_image_tokens(shape: str, model: str, detail: str = "auto") -> int:
    """The most one image of any size can cost: for images given by URL or file, or of unread size."""
    if _bills_as_anthropic(shape, model):
        return _claude_tier(model)[1]
    detail = _detail(detail)
    return max(regime.most(detail) for regime in _openai_regimes(model, detail))


def image_tokens(size: Size | None, shape: str, model: str, detail: str = "auto") -> int:
    """Tokens of one image: by the formula when its size is known, else the maximum."""
    if size is None:
        return max_image_tokens(shape, model, detail)
    if _bills_as_anthropic(shape, model):
        return anthropic_image_tokens(size[0], size[1], model)
    return openai_image_tokens(size[0], size[1], model, detail)


# --------------------------------------------------------------------------------------- request bodies


class _ImagePart(NamedTuple):
    data: str | None  # a data URL or bare base64; None for an https URL or a file
    bare: bool  # data is bare base64 (Anthropic), not a data URL
    detail: str


def _url_part(url: Any, detail: Any) -> _ImagePart:
    if isinstance(url, Mapping):  # {"url": ..., "detail": ...} where a plain string is usual
        url, detail = url.get("url"), url.get("detail", detail)
    data = url if isinstance(url, str) and is_image_data(url) else None
    return _ImagePart(data, False, _detail(detail))


def _anthropic_part(source: Any) -> _ImagePart:
    kind = source.get("type") if isinstance(source, Mapping) else None
    if kind == "base64" and isinstance(source.get("data"), str):
        return _ImagePart(source["data"], True, "auto")
    if kind == "url":
        return _url_part(source.get("url"), None)
    return _ImagePart(None, False, "auto")  # a file, or a malformed source: at the maximum


def _image_part(part: Mapping[str, Any]) -> _ImagePart | None:
    """The image a content part carries, or None when it is not an image part."""
    kind = part.get("type")
    if kind == "image_url":  # chat/completions: {"image_url": {"url", "detail"}} or {"image_url": "..."}
        return _url_part(part.get("image_url"), None)
    if kind in ("input_image", "computer_screenshot"):  # Responses: image_url or file_id, detail beside
        return _url_part(part.get("image_url"), part.get("detail"))
    if kind == "image":  # Anthropic messages and tool results: {"source": {...}}
        return _anthropic_part(part.get("source"))
    return None


@dataclass(slots=True)
class _Tally:
    shape: str
    model: str
    tokens: int = 0
    chars: int = 0
    sized: int = 0

    def add(self, image: _ImagePart) -> None:
        size = None
        if image.data is not None:
            self.chars += len(image.data)
            if self.sized < MAX_IMAGES:
                self.sized += 1
                size = base64_size(image.data) if image.bare else data_url_size(image.data)
        self.tokens += image_tokens(size, self.shape, self.model, image.detail)


def request_images(body: Mapping[str, Any], shape: str, model: str) -> tuple[int, int]:
    """(image tokens, characters of image data) of the image parts in a request's prompt fields.

    shape is "openai" (chat/completions image_url parts, Responses input_image parts) or "anthropic"
    (image blocks, also inside tool results). Tokens are an upper bound; the characters are those of
    the base64 strings and data URLs found, which the prompt's text measurement also counted."""
    if not isinstance(body, Mapping):
        return 0, 0
    tally = _Tally(shape, model if isinstance(model, str) else "")
    stack: list[tuple[Any, int]] = [(body.get(key), 1) for key in PROMPT_FIELDS]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, Mapping):
            image = _image_part(node)
            if image is not None:
                tally.add(image)
                continue
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth < MAX_DEPTH:
            stack.extend((child, depth + 1) for child in children if isinstance(child, Mapping | list))
    return tally.tokens, tally.chars
