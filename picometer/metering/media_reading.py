"""Reading an images or audio request and its answer, neither trusted: each value within its bound. Pure.

A request field comes as JSON (2, 2.5) or multipart text ("2", " 2.5 "); an answer may say anything. What
cannot be read is reported as None (or, for a request's bound, as its largest), never raised.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from fractions import Fraction
from typing import Any, NamedTuple

HUGE = 10**15  # past every bound: what an absurd count is cut to before it is clamped
MAX_UTF8_BYTES_PER_CHAR = 4
# Text tokens over the prompt's own (framing); at most one token per UTF-8 byte of the prompt is an upper
# bound for byte-level BPE. Our bound.
PROMPT_OVERHEAD_TOKENS = 256


def count(value: Any) -> int | None:
    """A non-negative count from an answer; None for what is not one (bool, string, NaN, negative)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float):
        if math.isnan(value) or value < 0:
            return None
        return HUGE if math.isinf(value) else min(math.ceil(value), HUGE)
    return min(value, HUGE) if value >= 0 else None


def number(value: Any) -> Fraction | None:
    """A finite number from a request field, as JSON (2, 2.5) or multipart text ("2", " 2.5 ")."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float) and math.isfinite(value):
        return Fraction(value)
    return None


def bounded_int(value: Any, low: int, high: int, default: int) -> int:
    """A request's small integer (n, partial_images) within [low, high]; `high` when it cannot be read."""
    if value is None:
        return default
    read = number(value)
    if read is None:
        return high
    return min(max(math.ceil(read), low), high)


def choice(value: Any) -> str | None:
    return value.strip().lower() if isinstance(value, str) else None


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def body_bytes_within(body_bytes: Any, ceiling: int) -> int:
    """The body's length within [0, ceiling]; the ceiling when it is not a length."""
    if isinstance(body_bytes, bool) or not isinstance(body_bytes, int):
        return ceiling
    return min(max(body_bytes, 0), ceiling)


def get(value: Any, key: str) -> Any:
    return value.get(key) if isinstance(value, Mapping) else None


class Tokens(NamedTuple):
    media_in: int  # image or audio input tokens: the dearer kind of input on every model priced
    text_in: int
    output: int


def reported_tokens(usage: Any, details_key: str, media_key: str, most: Tokens) -> Tokens | None:
    """The tokens an answer's `usage` says were billed, each cut to the request's bound `most`; None when it
    reports no input and output tokens. The input is split by `usage[details_key]` into `media_key` and
    "text_tokens"; with no usable split, as many as the bound allows are taken to be of the dearer kind."""
    input_total, output_total = count(get(usage, "input_tokens")), count(get(usage, "output_tokens"))
    if input_total is None or output_total is None or input_total + output_total == 0:
        return None
    total = min(input_total, most.media_in + most.text_in)
    details = get(usage, details_key)
    media_claim, text_claim = count(get(details, media_key)), count(get(details, "text_tokens"))
    if media_claim is not None and text_claim is not None:
        text_in = min(text_claim, most.text_in)
        media_in = min(max(media_claim, total - text_in), most.media_in)
    else:
        media_in = min(total, most.media_in)
        text_in = min(total - media_in, most.text_in)
    return Tokens(media_in, text_in, min(output_total, most.output))
