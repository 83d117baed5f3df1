"""What OpenAI's images and audio endpoints cost, and the most one call can cost, the way OpenAI bills them. Pure.

Every price is OpenAI's list price, cited beside its number: "pricing page" is openai.com/api/pricing and
platform.openai.com/docs/pricing (now developers.openai.com/api/docs/pricing); "model page" is
platform.openai.com/docs/models/<model>. Amounts are summed exactly (fractions) and rounded once, so a cost
is never above its reservation by a rounding error.

A reservation is read from the request alone and bounds every answer consistent with that request. A cost
is read from the request and the provider's parsed JSON answer (None when binary or unparsable). Answers
are untrusted: every number they report is clamped to the bound the request allows, and an answer that does
not say what was billed is charged the reservation (source "reservation"). A model outside the tables is
charged the most any model in the tables could cost for the same request (source "conservative").
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

PER_M = Fraction(1, 1_000_000)  # a "per 1M tokens" (or characters) price, as a price per unit

GENERATIONS, EDITS, VARIATIONS = "images/generations", "images/edits", "images/variations"
SPEECH, TRANSCRIPTIONS, TRANSLATIONS = "audio/speech", "audio/transcriptions", "audio/translations"
IMAGE_ENDPOINTS = (GENERATIONS, EDITS, VARIATIONS)
TRANSCRIBE_ENDPOINTS = (TRANSCRIPTIONS, TRANSLATIONS)
MEDIA_ENDPOINTS = (*IMAGE_ENDPOINTS, SPEECH, *TRANSCRIBE_ENDPOINTS)

RESERVATION = "reservation"  # the answer does not say what was billed: charged its reservation
CONSERVATIVE = "conservative"  # the model is not in the tables: charged the dearest the tables allow
PRICED = "openai-pricing:"  # followed by the model; "(tokens)" when priced from the answer's usage


@dataclass(frozen=True, slots=True)
class MediaCharge:
    cost_usd: float
    source: str  # "openai-pricing:<model>", "openai-pricing:<model>(tokens)", "reservation" or "conservative"
    input_tokens: int = 0  # as billed, when the answer reports tokens (GPT Image usage, gpt-4o-*-transcribe)
    output_tokens: int = 0
    audio_input_tokens: int = 0  # the audio part of input_tokens
    audio_output_tokens: int = 0  # the audio part of output_tokens


# ---------------------------------------------------------------------------------------------------------
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
MAX_UTF8_BYTES_PER_CHAR = 4
# Text tokens over the prompt's own (framing); at most one token per UTF-8 byte of the prompt is an upper
# bound for byte-level BPE. Our bound.
PROMPT_OVERHEAD_TOKENS = 256
# Edits: "You can provide up to 16 images" (API reference, images/createEdit), plus one mask.
MAX_EDIT_IMAGES = 16 + 1
# Our bound, not OpenAI's number: image input tokens per input image. OpenAI publishes no formula for GPT
# Image inputs; about 3,050 tokens are reported for a 1024×1024 image at input_fidelity=high (fal.ai's
# gpt-image-1 edit pricing note) and the model itself spends at most 6,240 tokens on its largest output.
# 8,192 per image is above both.
IMAGE_INPUT_TOKENS_PER_IMAGE = 8192


# ---------------------------------------------------------------------------------------------------------
# Speech (pricing page, "Transcription and speech generation").
MAX_SPEECH_CHARS = 4096  # API reference, audio/createSpeech: input "maximum length is 4096 characters"
TTS_USD_PER_CHAR: dict[str, Fraction] = {
    "tts-1": 15 * PER_M,  # pricing page: TTS $15.00 / 1M characters
    "tts-1-hd": 30 * PER_M,  # pricing page: TTS HD $30.00 / 1M characters
}


@dataclass(frozen=True, slots=True)
class SpeechTokenRates:  # USD per token
    text_in: Fraction
    audio_out: Fraction


SPEECH_TOKEN_RATES: dict[str, SpeechTokenRates] = {
    # pricing page / model page gpt-4o-mini-tts: text input $0.60, audio output $12.00 per 1M tokens
    # (estimated $0.015 a minute: 0.015 / 12e-6 = 1,250 audio tokens a minute, about 21 a second).
    "gpt-4o-mini-tts": SpeechTokenRates(Fraction("0.60") * PER_M, 12 * PER_M),
}
# The speech answer is audio: what was billed is never said, so gpt-4o-mini-tts is charged this bound.
# Our bound: 10 audio tokens per input character. Measured billing gives ~1.3 (4,096 characters of English
# prose -> 5,392 audio tokens for 268 s of speech, i.e. ~20 tokens a second: sanand0's "OpenAI TTS cost",
# 2025-11-02); digits, symbols and abbreviations read out as words take up to ~0.4 s (8 tokens) a character.
AUDIO_TOKENS_PER_CHAR = 10
SPEECH_SPEED_RANGE = (Fraction(1, 4), Fraction(4))  # API reference: speed "from 0.25 to 4.0"; slower is longer
SPEECH_OVERHEAD_TOKENS = 64  # text tokens over the input's and instructions' own bytes. Our bound.


# ---------------------------------------------------------------------------------------------------------
# Transcription and translation (pricing page, "Transcription and speech generation").
WHISPER_USD_PER_SECOND = Fraction("0.006") / 60  # pricing page: Whisper $0.006 / minute


@dataclass(frozen=True, slots=True)
class TranscribeTokenRates:  # USD per token
    text_in: Fraction
    audio_in: Fraction
    text_out: Fraction


TRANSCRIBE_TOKEN_RATES: dict[str, TranscribeTokenRates] = {
    # pricing page gpt-4o-transcribe: text input $2.50, audio input $6.00, text output $10.00 per 1M tokens
    # (estimated $0.006 / minute).
    "gpt-4o-transcribe": TranscribeTokenRates(Fraction("2.50") * PER_M, 6 * PER_M, 10 * PER_M),
    # pricing page gpt-4o-mini-transcribe: text input $1.25, audio input $3.00, text output $5.00 per 1M
    # tokens (estimated $0.003 / minute).
    "gpt-4o-mini-transcribe": TranscribeTokenRates(Fraction("1.25") * PER_M, 3 * PER_M, 5 * PER_M),
}
MAX_UPLOAD_BYTES = 25 * 1024 * 1024  # "File uploads are currently limited to 25 MB" (speech-to-text guide)
# Our bound: no usable audio is leaner than 6 kbit/s (Opus's lowest bitrate; MP3's is 8 kbit/s), so a
# file plays for at most bytes × 8 / 6,000 seconds: 25 MiB -> 34,953 s, about 583 minutes.
MIN_AUDIO_BITS_PER_SECOND = 6000
MIN_AUDIO_SECONDS = 60  # a reservation never below a minute's worth, whatever the file's size
# gpt-4o-(mini-)transcribe refuse longer audio ("audio duration … is longer than 1500 seconds which is the
# maximum for this model", 400 invalid_value; later 1,400 s): the larger is our bound.
MAX_TOKEN_MODEL_SECONDS = 1500
# Our bound: 20 audio tokens a second. The pricing page's estimates ($0.006 / min at $6 / 1M audio input,
# $0.003 / min at $3 / 1M) come to 1,000 tokens a minute, ~16.7 a second; GPT-4o audio input is 10 a second.
AUDIO_TOKENS_PER_SECOND = 20
# Our bound on transcript tokens: the model's 2,000 max output tokens (model pages), or 15 text tokens a
# second of audio if more (fast speech is ~7 syllables a second; few scripts take 2 tokens a syllable).
MAX_TRANSCRIPT_TOKENS = 2000
TEXT_TOKENS_PER_SECOND = 15
TRANSCRIBE_CONTEXT_TOKENS = 16_000  # model pages: 16,000 context window: no prompt is longer


_SNAPSHOT = re.compile(r"-\d{4}-\d{2}-\d{2}$")
_PRICED_MODELS: dict[str, frozenset[str]] = {
    GENERATIONS: frozenset({"dall-e-2", "dall-e-3", *GPT_IMAGE_RATES}),
    EDITS: frozenset({"dall-e-2", *GPT_IMAGE_RATES}),
    VARIATIONS: frozenset({"dall-e-2"}),
    SPEECH: frozenset({*TTS_USD_PER_CHAR, *SPEECH_TOKEN_RATES}),
    TRANSCRIPTIONS: frozenset({"whisper-1", *TRANSCRIBE_TOKEN_RATES}),
    TRANSLATIONS: frozenset({"whisper-1", *TRANSCRIBE_TOKEN_RATES}),
}
_HUGE = 10**15  # past every bound: what an absurd count is cut to before it is clamped


def _endpoint(endpoint: Any) -> str:
    if not isinstance(endpoint, str):
        return ""
    name = endpoint.strip().strip("/")
    return name[3:] if name.startswith("v1/") else name


def _model(model: Any) -> str | None:
    """The table's name for a model: lower case, a snapshot's date dropped (gpt-4o-mini-tts-2025-12-15)."""
    if not isinstance(model, str):
        return None
    return _SNAPSHOT.sub("", model.strip().lower())


def _priced_model(model: Any, endpoint: str) -> str | None:
    name = _model(model)
    return name if name is not None and name in _PRICED_MODELS.get(endpoint, ()) else None


def is_media_priced(model: str | None, endpoint: str) -> bool:
    """The model is in our table for this endpoint."""
    return _priced_model(model, _endpoint(endpoint)) is not None


# ---------------------------------------------------------------------------------------------------------
# Reading untrusted values.


def _count(value: Any) -> int | None:
    """A non-negative count from an answer; None for what is not one (bool, string, NaN, negative)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float):
        if math.isnan(value) or value < 0:
            return None
        return _HUGE if math.isinf(value) else min(math.ceil(value), _HUGE)
    return min(value, _HUGE) if value >= 0 else None


def _number(value: Any) -> Fraction | None:
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


def _bounded_int(value: Any, low: int, high: int, default: int) -> int:
    """A request's small integer (n, partial_images) within [low, high]; `high` when it cannot be read."""
    if value is None:
        return default
    number = _number(value)
    if number is None:
        return high
    return min(max(math.ceil(number), low), high)


def _choice(value: Any) -> str | None:
    return value.strip().lower() if isinstance(value, str) else None


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _body_bytes(body_bytes: Any, ceiling: int) -> int:
    """The body's length within [0, ceiling]; the ceiling when it is not a length."""
    if isinstance(body_bytes, bool) or not isinstance(body_bytes, int):
        return ceiling
    return min(max(body_bytes, 0), ceiling)


def _get(value: Any, key: str) -> Any:
    return value.get(key) if isinstance(value, Mapping) else None


def _usd(amount: Fraction) -> float:
    return float(amount)


# ---------------------------------------------------------------------------------------------------------
# Images.


def _requested_images(fields: Mapping[str, Any]) -> int:
    return _bounded_int(fields.get("n"), 1, MAX_IMAGES, 1)


def _dall_e_price(model: str, fields: Mapping[str, Any]) -> Fraction:
    """USD per image; a size or quality outside the table (or "auto") is priced as the model's dearest."""
    size = _choice(fields.get("size")) or DALL_E_DEFAULT_SIZE
    if model == "dall-e-2":
        return DALL_E_2_USD.get(size, max(DALL_E_2_USD.values()))
    quality = _choice(fields.get("quality")) or DALL_E_3_DEFAULT_QUALITY
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
    quality = _choice(fields.get("quality")) if exact else None
    size = _choice(fields.get("size")) if exact else None
    # "auto" (the default) or anything unknown: the largest the table holds.
    by_size = GPT_IMAGE_OUTPUT_TOKENS.get(quality or "", GPT_IMAGE_OUTPUT_TOKENS["high"])
    return by_size.get(size or "", max(by_size.values()))


def _image_bounds(
    model: str, endpoint: str, fields: Mapping[str, Any], body_bytes: Any, exact: bool = True
) -> _ImageBounds:
    n = _requested_images(fields)
    partials = _bounded_int(fields.get("partial_images"), 0, MAX_PARTIAL_IMAGES, 0)
    per_image = _image_output_per_image(fields, exact) + partials * PARTIAL_IMAGE_TOKENS
    text_out = TEXT_OUTPUT_ALLOWANCE.get(model, 0)
    prompt = fields.get("prompt")
    most_prompt_bytes = MAX_PROMPT_CHARS * MAX_UTF8_BYTES_PER_CHAR
    if isinstance(prompt, str):  # a JSON prompt, or a multipart one of at most 1 KiB (forms.MAX_VALUE_BYTES)
        prompt_bytes = min(_utf8_len(prompt), most_prompt_bytes)
    else:  # a longer multipart prompt is not among the fields: every byte of it is in the body
        prompt_bytes = _body_bytes(body_bytes, most_prompt_bytes)
    image_in = MAX_EDIT_IMAGES * IMAGE_INPUT_TOKENS_PER_IMAGE if endpoint == EDITS else 0
    return _ImageBounds(
        text_in=prompt_bytes + PROMPT_OVERHEAD_TOKENS,
        image_in=image_in,
        output=n * (per_image + text_out),
        text_out=n * text_out,
    )


def _image_token_reservation(rates: ImageTokenRates, bounds: _ImageBounds) -> Fraction:
    return bounds.text_in * rates.text_in + bounds.image_in * rates.image_in + bounds.output * rates.image_out


def _split(
    total: int, first_claim: int | None, second_claim: int | None, first_max: int, second_max: int
) -> tuple[int, int]:
    """Input tokens split between the dearer kind (first) and the cheaper (second), each within its bound:
    with no usable breakdown, as many as the bound allows are taken to be of the dearer kind."""
    if first_claim is not None and second_claim is not None:
        second = min(second_claim, second_max)
        first = min(max(first_claim, total - second), first_max)
    else:
        first = min(total, first_max)
        second = min(total - first, second_max)
    return first, second


def _image_token_cost(model: str, rates: ImageTokenRates, bounds: _ImageBounds, answer: Any) -> MediaCharge | None:
    usage = _get(answer, "usage")
    input_total, output_total = _count(_get(usage, "input_tokens")), _count(_get(usage, "output_tokens"))
    if input_total is None or output_total is None or input_total + output_total == 0:
        return None
    details = _get(usage, "input_tokens_details")
    image_in, text_in = _split(
        min(input_total, bounds.image_in + bounds.text_in),
        _count(_get(details, "image_tokens")),
        _count(_get(details, "text_tokens")),
        bounds.image_in,
        bounds.text_in,
    )
    output = min(output_total, bounds.output)
    text_out = min(_count(_get(_get(usage, "output_tokens_details"), "text_tokens")) or 0, bounds.text_out, output)
    image_out = output - text_out
    cost = text_in * rates.text_in + image_in * rates.image_in + image_out * rates.image_out
    cost += text_out * rates.text_out
    return MediaCharge(_usd(cost), f"{PRICED}{model}(tokens)", input_tokens=text_in + image_in, output_tokens=output)


def _conservative_image(endpoint: str, fields: Mapping[str, Any], body_bytes: Any) -> Fraction:
    """The most any model in the tables could cost for this request, at its largest size and quality."""
    dearest_tokens = max(
        _image_token_reservation(rates, _image_bounds(model, endpoint, fields, body_bytes, exact=False))
        for model, rates in GPT_IMAGE_RATES.items()
    )
    dearest_per_image = max(*DALL_E_2_USD.values(), *DALL_E_3_USD.values())
    return max(dearest_tokens, _requested_images(fields) * dearest_per_image)


def _image_reservation(endpoint: str, model: str | None, fields: Mapping[str, Any], body_bytes: Any) -> Fraction:
    if model is None:
        return _conservative_image(endpoint, fields, body_bytes)
    if model in GPT_IMAGE_RATES:
        return _image_token_reservation(GPT_IMAGE_RATES[model], _image_bounds(model, endpoint, fields, body_bytes))
    return _dall_e_images(model, fields) * _dall_e_price(model, fields)


def _image_cost(
    endpoint: str, model: str | None, fields: Mapping[str, Any], body_bytes: Any, answer: Any
) -> MediaCharge:
    if model is None:
        return MediaCharge(_usd(_conservative_image(endpoint, fields, body_bytes)), CONSERVATIVE)
    if model in GPT_IMAGE_RATES:
        rates, bounds = GPT_IMAGE_RATES[model], _image_bounds(model, endpoint, fields, body_bytes)
        charge = _image_token_cost(model, rates, bounds, answer)
        return charge or MediaCharge(_usd(_image_token_reservation(rates, bounds)), RESERVATION)
    requested = _dall_e_images(model, fields)
    data = _get(answer, "data")
    made = len(data) if isinstance(data, list) and 1 <= len(data) <= requested else requested
    return MediaCharge(_usd(made * _dall_e_price(model, fields)), f"{PRICED}{model}")


# ---------------------------------------------------------------------------------------------------------
# Speech: the answer is audio, so the charge is read from the request.


def _speech_chars(fields: Mapping[str, Any]) -> int:
    text = fields.get("input")
    return min(max(len(text), 1), MAX_SPEECH_CHARS) if isinstance(text, str) else MAX_SPEECH_CHARS


def _speech_token_bound(rates: SpeechTokenRates, fields: Mapping[str, Any]) -> Fraction:
    text, instructions = fields.get("input"), fields.get("instructions")
    most_bytes = MAX_SPEECH_CHARS * MAX_UTF8_BYTES_PER_CHAR
    text_bytes = min(_utf8_len(text), most_bytes) if isinstance(text, str) else most_bytes
    instruction_bytes = _utf8_len(instructions) if isinstance(instructions, str) else 0
    text_in = text_bytes + instruction_bytes + SPEECH_OVERHEAD_TOKENS
    low, high = SPEECH_SPEED_RANGE
    speed = _number(fields["speed"]) if fields.get("speed") is not None else Fraction(1)
    slowness = max(Fraction(1), 1 / min(max(speed, low), high)) if speed is not None else 1 / low
    audio_out = math.ceil(_speech_chars(fields) * AUDIO_TOKENS_PER_CHAR * slowness)
    return text_in * rates.text_in + audio_out * rates.audio_out


def _speech_reservation(model: str | None, fields: Mapping[str, Any]) -> Fraction:
    if model in TTS_USD_PER_CHAR:
        return _speech_chars(fields) * TTS_USD_PER_CHAR[model]
    if model in SPEECH_TOKEN_RATES:
        return _speech_token_bound(SPEECH_TOKEN_RATES[model], fields)
    return max(_speech_reservation(known, fields) for known in (*TTS_USD_PER_CHAR, *SPEECH_TOKEN_RATES))


def _speech_cost(model: str | None, fields: Mapping[str, Any]) -> MediaCharge:
    cost = _usd(_speech_reservation(model, fields))
    if model in TTS_USD_PER_CHAR:
        return MediaCharge(cost, f"{PRICED}{model}")  # characters are known exactly from the request
    return MediaCharge(cost, RESERVATION if model is not None else CONSERVATIVE)


# ---------------------------------------------------------------------------------------------------------
# Transcription and translation.


def _audio_seconds(body_bytes: Any) -> int:
    """The longest the uploaded audio can play, from the body's size at the leanest bitrate."""
    size = _body_bytes(body_bytes, MAX_UPLOAD_BYTES)
    return max(math.ceil(Fraction(size * 8, MIN_AUDIO_BITS_PER_SECOND)), MIN_AUDIO_SECONDS)


@dataclass(frozen=True, slots=True)
class _TranscribeBounds:
    text_in: int
    audio_in: int
    output: int


def _transcribe_bounds(body_bytes: Any) -> _TranscribeBounds:
    seconds = min(_audio_seconds(body_bytes), MAX_TOKEN_MODEL_SECONDS)
    return _TranscribeBounds(
        text_in=_body_bytes(body_bytes, TRANSCRIBE_CONTEXT_TOKENS) + PROMPT_OVERHEAD_TOKENS,
        audio_in=seconds * AUDIO_TOKENS_PER_SECOND,
        output=max(MAX_TRANSCRIPT_TOKENS, seconds * TEXT_TOKENS_PER_SECOND),
    )


def _transcribe_token_reservation(rates: TranscribeTokenRates, bounds: _TranscribeBounds) -> Fraction:
    return bounds.text_in * rates.text_in + bounds.audio_in * rates.audio_in + bounds.output * rates.text_out


def _transcribe_reservation(model: str | None, body_bytes: Any) -> Fraction:
    if model == "whisper-1":
        return _audio_seconds(body_bytes) * WHISPER_USD_PER_SECOND
    if model in TRANSCRIBE_TOKEN_RATES:
        return _transcribe_token_reservation(TRANSCRIBE_TOKEN_RATES[model], _transcribe_bounds(body_bytes))
    return max(_transcribe_reservation(known, body_bytes) for known in ("whisper-1", *TRANSCRIBE_TOKEN_RATES))


def _reported_seconds(answer: Any) -> Fraction | None:
    """The audio's duration as the answer reports it: usage {"type": "duration", "seconds"} or verbose_json's
    `duration`; None when neither is a finite number of seconds."""
    usage = _get(answer, "usage")
    candidates = [_get(usage, "seconds") if _get(usage, "type") in ("duration", None) else None]
    candidates.append(_get(answer, "duration"))
    for value in candidates:
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if isinstance(value, float) and math.isinf(value) and value > 0:
            return Fraction(_HUGE)
        if not (isinstance(value, int) or math.isfinite(value)) or value < 0:
            continue
        return Fraction(value)
    return None


def _transcribe_cost(model: str | None, body_bytes: Any, answer: Any) -> MediaCharge:
    reservation = _usd(_transcribe_reservation(model, body_bytes))
    if model is None:
        return MediaCharge(reservation, CONSERVATIVE)
    if model == "whisper-1":
        seconds = _reported_seconds(answer)
        if seconds is None:
            return MediaCharge(reservation, RESERVATION)
        # Billed by the second (to the nearest, per OpenAI); we round up, and charge at least one second.
        billed = min(max(math.ceil(seconds), 1), _audio_seconds(body_bytes))
        return MediaCharge(_usd(billed * WHISPER_USD_PER_SECOND), f"{PRICED}{model}")
    rates, bounds = TRANSCRIBE_TOKEN_RATES[model], _transcribe_bounds(body_bytes)
    usage = _get(answer, "usage")
    input_total, output = _count(_get(usage, "input_tokens")), _count(_get(usage, "output_tokens"))
    if _get(usage, "type") not in ("tokens", None) or input_total is None or output is None:
        return MediaCharge(reservation, RESERVATION)
    if input_total + output == 0:
        return MediaCharge(reservation, RESERVATION)
    details = _get(usage, "input_token_details")
    audio_in, text_in = _split(
        min(input_total, bounds.audio_in + bounds.text_in),
        _count(_get(details, "audio_tokens")),
        _count(_get(details, "text_tokens")),
        bounds.audio_in,
        bounds.text_in,
    )
    output = min(output, bounds.output)
    cost = text_in * rates.text_in + audio_in * rates.audio_in + output * rates.text_out
    return MediaCharge(
        _usd(cost),
        f"{PRICED}{model}(tokens)",
        input_tokens=text_in + audio_in,
        output_tokens=output,
        audio_input_tokens=audio_in,
    )


# ---------------------------------------------------------------------------------------------------------


def media_reservation(endpoint: str, model: str | None, fields: Mapping[str, Any], body_bytes: int) -> float:
    """Upper bound in USD of what this images/audio call can cost, from the request alone."""
    name = _endpoint(endpoint)
    fields = fields if isinstance(fields, Mapping) else {}
    priced = _priced_model(model, name)
    if name in IMAGE_ENDPOINTS:
        return _usd(_image_reservation(name, priced, fields, body_bytes))
    if name == SPEECH:
        return _usd(_speech_reservation(priced, fields))
    if name in TRANSCRIBE_ENDPOINTS:
        return _usd(_transcribe_reservation(priced, body_bytes))
    return 0.0  # not an images or audio endpoint


def media_cost(
    endpoint: str, model: str | None, fields: Mapping[str, Any], body_bytes: int, answer: Any
) -> MediaCharge:
    """What the call costs, from the request and the provider's parsed JSON answer (None for binary answers
    like speech audio, or an unparsable body)."""
    name = _endpoint(endpoint)
    fields = fields if isinstance(fields, Mapping) else {}
    priced = _priced_model(model, name)
    if name in IMAGE_ENDPOINTS:
        return _image_cost(name, priced, fields, body_bytes, answer)
    if name == SPEECH:
        return _speech_cost(priced, fields)
    if name in TRANSCRIBE_ENDPOINTS:
        return _transcribe_cost(priced, body_bytes, answer)
    return MediaCharge(0.0, "unpriced")  # not an images or audio endpoint
