"""What OpenAI's images endpoints (generations, edits, variations) cost, and the most one call can cost. Pure.

DALL·E is billed per image, by size and quality; GPT Image per token, as the answer's `usage` reports. Every
price is OpenAI's list price, cited beside its number as in `metering.media`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from picometer.metering.media_charge import CONSERVATIVE, PER_M, PRICED, RESERVATION, MediaCharge, usd
from picometer.metering.media_reading import (
    MAX_UTF8_BYTES_PER_CHAR,
    PROMPT_OVERHEAD_TOKENS,
    Tokens,
    body_bytes_within,
    bounded_int,
    choice,
    count,
    get,
    reported_tokens,
    utf8_len,
)

GENERATIONS, EDITS, VARIATIONS = "images/generations", "images/edits", "images/variations"
IMAGE_ENDPOINTS = (GENERATIONS, EDITS, VARIATIONS)

# Images billed per image (pricing page, "Image generation"; DALL·E rows).
MAX_IMAGES = 10  # images/* `n`: "Must be between 1 and 10" (API reference); dall-e-3 takes only n=1
DALL_E_3_USD: dict[tuple[str, str], Fraction] = {  # (quality, size) -> USD per image
    ("standard", "1024x1024"): Fraction("0.040"),  # pricing page: DALL·E 3 Standard 1024×1024 $0.040
    ("standard", "1024x1792"): Fraction("0.080"),  # pricing page: DALL·E 3 Standard 1024×1792 $0.080
    ("standard", "1792x1024"): Fraction("0.080"),  # pricing page: DALL·E 3 Standard 1792×1024 $0.080
    ("hd", "1024x1024"): Fraction("0.080"),  # pricing page: DALL·E 3 HD 1024×1024 $0.080
    ("hd", "1024x1792"): Fraction("0.120"),  # pricing page: DALL·E 3 HD 1024×1792 $0.120
    ("hd", "1792x1024"): Fraction("0.120"),  # pricing page: DALL·E 3 HD 1792×1024 $0.120
}
DALL_E_2_USD: dict[str, Fraction] = {  # size -> USD per image (generations, edits and variations alike)
    "256x256": Fraction("0.016"),  # pricing page: DALL·E 2 256×256 $0.016
    "512x512": Fraction("0.018"),  # pricing page: DALL·E 2 512×512 $0.018
    "1024x1024": Fraction("0.020"),  # pricing page: DALL·E 2 1024×1024 $0.020
}
# Defaults OpenAI documents (API reference, images/create): size 1024x1024; dall-e-3 quality "standard".
DALL_E_DEFAULT_SIZE, DALL_E_3_DEFAULT_QUALITY = "1024x1024", "standard"


# Images billed per token (GPT Image): the answer's `usage` says what was billed.
@dataclass(frozen=True, slots=True)
class ImageTokenRates:  # USD per token
    text_in: Fraction
    image_in: Fraction
    image_out: Fraction
    text_out: Fraction  # never above image_out (a reservation prices every output token at image_out)


GPT_IMAGE_RATES: dict[str, ImageTokenRates] = {
    # pricing page / model page gpt-image-1: text input $5.00, image input $10.00, image output $40.00 per 1M.
    # No text-output price is published: any text output it reports is priced as image output (the dearer).
    "gpt-image-1": ImageTokenRates(5 * PER_M, 10 * PER_M, 40 * PER_M, 40 * PER_M),
    # model page gpt-image-1-mini: text input $2.00, image input $2.50, image output $8.00 per 1M.
    "gpt-image-1-mini": ImageTokenRates(2 * PER_M, Fraction("2.50") * PER_M, 8 * PER_M, 8 * PER_M),
    # pricing page gpt-image-1.5: text input $5.00, text output $10.00; image input $8.00, image output $32.00.
    "gpt-image-1.5": ImageTokenRates(5 * PER_M, 8 * PER_M, 32 * PER_M, 10 * PER_M),
}
GPT_IMAGE_SIZES = ("1024x1024", "1024x1536", "1536x1024")
# Image output tokens per image, by quality and size (OpenAI image generation guide, "Cost and latency"
# table; gpt-image-1 per-image prices on the pricing page are these × $40/1M, e.g. 6240 × 40 / 1e6 ≈ $0.25).
GPT_IMAGE_OUTPUT_TOKENS: dict[str, dict[str, int]] = {
    "low": {"1024x1024": 272, "1024x1536": 408, "1536x1024": 400},
    "medium": {"1024x1024": 1056, "1024x1536": 1584, "1536x1024": 1568},
    "high": {"1024x1024": 4160, "1024x1536": 6240, "1536x1024": 6208},
}
PARTIAL_IMAGE_TOKENS = 100  # image guide, streaming: "each partial image … an additional 100 image output tokens"
MAX_PARTIAL_IMAGES = 3  # API reference: partial_images "between 0 and 3"
# Our bound, not OpenAI's number: text output tokens a GPT Image model may add per image. gpt-image-1.5 bills
# text output ("tokens reasoning about your prompt"); gpt-image-1's output is documented as the image's tokens
# alone (API reference: usage.output_tokens "The number of image tokens in the output image"), and so -mini's.
TEXT_OUTPUT_ALLOWANCE: dict[str, int] = {"gpt-image-1.5": 1024}
MAX_PROMPT_CHARS = 32_000  # API reference: prompt "maximum length is 32000 characters" for GPT Image
# Edits: "You can provide up to 16 images" (API reference, images/createEdit), plus one mask.
MAX_EDIT_IMAGES = 16 + 1
# Our bound, not OpenAI's number: image input tokens per input image. OpenAI publishes no formula for GPT
# Image inputs; about 3,050 tokens are reported for a 1024×1024 image at input_fidelity=high (fal.ai's
# gpt-image-1 edit pricing note) and the model itself spends at most 6,240 tokens on its largest output.
# 8,192 per image is above both.
IMAGE_INPUT_TOKENS_PER_IMAGE = 8192

IMAGE_MODELS: dict[str, frozenset[str]] = {  # the models each images endpoint is priced for
    GENERATIONS: frozenset({"dall-e-2", "dall-e-3", *GPT_IMAGE_RATES}),
    EDITS: frozenset({"dall-e-2", *GPT_IMAGE_RATES}),
    VARIATIONS: frozenset({"dall-e-2"}),
}


def _requested_images(fields: Mapping[str, Any]) -> int:
    return bounded_int(fields.get("n"), 1, MAX_IMAGES, 1)


def _dall_e_price(model: str, fields: Mapping[str, Any]) -> Fraction:
    """USD per image; a size or quality outside the table (or "auto") is priced as the model's dearest."""
    size = choice(fields.get("size")) or DALL_E_DEFAULT_SIZE
    if model == "dall-e-2":
        return DALL_E_2_USD.get(size, max(DALL_E_2_USD.values()))
    quality = choice(fields.get("quality")) or DALL_E_3_DEFAULT_QUALITY
    return DALL_E_3_USD.get((quality, size), max(DALL_E_3_USD.values()))


def _dall_e_images(model: str, fields: Mapping[str, Any]) -> int:
    return 1 if model == "dall-e-3" else _requested_images(fields)


@dataclass(frozen=True, slots=True)
class _ImageBounds:
    text_in: int
    image_in: int
    output: int  # image and text output tokens together
    text_out: int  # of which text


def _image_output_per_image(fields: Mapping[str, Any], exact: bool) -> int:
    quality = choice(fields.get("quality")) if exact else None
    size = choice(fields.get("size")) if exact else None
    # "auto" (the default) or anything unknown: the largest the table holds.
    by_size = GPT_IMAGE_OUTPUT_TOKENS.get(quality or "", GPT_IMAGE_OUTPUT_TOKENS["high"])
    return by_size.get(size or "", max(by_size.values()))


def _image_bounds(
    model: str, endpoint: str, fields: Mapping[str, Any], body_bytes: Any, exact: bool = True
) -> _ImageBounds:
    n = _requested_images(fields)
    partials = bounded_int(fields.get("partial_images"), 0, MAX_PARTIAL_IMAGES, 0)
    per_image = _image_output_per_image(fields, exact) + partials * PARTIAL_IMAGE_TOKENS
    text_out = TEXT_OUTPUT_ALLOWANCE.get(model, 0)
    prompt = fields.get("prompt")
    most_prompt_bytes = MAX_PROMPT_CHARS * MAX_UTF8_BYTES_PER_CHAR
    if isinstance(prompt, str):  # a JSON prompt, or a multipart one of at most 1 KiB (forms.MAX_VALUE_BYTES)
        prompt_bytes = min(utf8_len(prompt), most_prompt_bytes)
    else:  # a longer multipart prompt is not among the fields: every byte of it is in the body
        prompt_bytes = body_bytes_within(body_bytes, most_prompt_bytes)
    image_in = MAX_EDIT_IMAGES * IMAGE_INPUT_TOKENS_PER_IMAGE if endpoint == EDITS else 0
    return _ImageBounds(
        text_in=prompt_bytes + PROMPT_OVERHEAD_TOKENS,
        image_in=image_in,
        output=n * (per_image + text_out),
        text_out=n * text_out,
    )


def _image_token_reservation(rates: ImageTokenRates, bounds: _ImageBounds) -> Fraction:
    return bounds.text_in * rates.text_in + bounds.image_in * rates.image_in + bounds.output * rates.image_out


def _image_token_cost(model: str, rates: ImageTokenRates, bounds: _ImageBounds, answer: Any) -> MediaCharge | None:
    usage = get(answer, "usage")
    most = Tokens(media_in=bounds.image_in, text_in=bounds.text_in, output=bounds.output)
    tokens = reported_tokens(usage, "input_tokens_details", "image_tokens", most)
    if tokens is None:
        return None
    image_in, text_in, output = tokens
    text_out = min(count(get(get(usage, "output_tokens_details"), "text_tokens")) or 0, bounds.text_out, output)
    image_out = output - text_out
    cost = text_in * rates.text_in + image_in * rates.image_in + image_out * rates.image_out
    cost += text_out * rates.text_out
    return MediaCharge(usd(cost), f"{PRICED}{model}(tokens)", input_tokens=text_in + image_in, output_tokens=output)


def _conservative_image(endpoint: str, fields: Mapping[str, Any], body_bytes: Any) -> Fraction:
    """The most any model in the tables could cost for this request, at its largest size and quality."""
    dearest_tokens = max(
        _image_token_reservation(rates, _image_bounds(model, endpoint, fields, body_bytes, exact=False))
        for model, rates in GPT_IMAGE_RATES.items()
    )
    dearest_per_image = max(*DALL_E_2_USD.values(), *DALL_E_3_USD.values())
    return max(dearest_tokens, _requested_images(fields) * dearest_per_image)


def image_reservation(endpoint: str, model: str | None, fields: Mapping[str, Any], body_bytes: Any) -> Fraction:
    """The most an images call can cost; `model` is the table's name, or None when the tables lack it."""
    if model is None:
        return _conservative_image(endpoint, fields, body_bytes)
    if model in GPT_IMAGE_RATES:
        return _image_token_reservation(GPT_IMAGE_RATES[model], _image_bounds(model, endpoint, fields, body_bytes))
    return _dall_e_images(model, fields) * _dall_e_price(model, fields)


def image_cost(
    endpoint: str, model: str | None, fields: Mapping[str, Any], body_bytes: Any, answer: Any
) -> MediaCharge:
    """What an images call costs, from the request and its parsed answer; `model` as for image_reservation."""
    if model is None:
        return MediaCharge(usd(_conservative_image(endpoint, fields, body_bytes)), CONSERVATIVE)
    if model in GPT_IMAGE_RATES:
        rates, bounds = GPT_IMAGE_RATES[model], _image_bounds(model, endpoint, fields, body_bytes)
        charge = _image_token_cost(model, rates, bounds, answer)
        return charge or MediaCharge(usd(_image_token_reservation(rates, bounds)), RESERVATION)
    requested = _dall_e_images(model, fields)
    data = get(answer, "data")
    made = len(data) if isinstance(data, list) and 1 <= len(data) <= requested else requested
    return MediaCharge(usd(made * _dall_e_price(model, fields)), f"{PRICED}{model}")
