"""Images and audio priced the way OpenAI bills them, and reservations never below what a call can cost.

Every expected dollar figure is worked out here by hand from OpenAI's public prices, not read from the table
under test. Sources: openai.com/api/pricing and platform.openai.com/docs/pricing ("pricing page"), and
platform.openai.com/docs/models/<model> ("model page").
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from picometer.metering.media import MEDIA_ENDPOINTS, is_media_priced, media_cost, media_reservation
from picometer.metering.media_charge import CONSERVATIVE, RESERVATION

M = 1_000_000  # "per 1M tokens" / "per 1M characters"

# Per-image prices (pricing page, "Image generation", DALL·E rows).
DALL_E_3_STANDARD_SQUARE, DALL_E_3_STANDARD_WIDE = 0.040, 0.080
DALL_E_3_HD_SQUARE, DALL_E_3_HD_WIDE = 0.080, 0.120
DALL_E_2_256, DALL_E_2_512, DALL_E_2_1024 = 0.016, 0.018, 0.020
# GPT Image per 1M tokens (pricing page and model pages).
GPT_IMAGE_1 = {"text_in": 5.00, "image_in": 10.00, "image_out": 40.00}
GPT_IMAGE_1_MINI = {"text_in": 2.00, "image_in": 2.50, "image_out": 8.00}
GPT_IMAGE_1_5 = {"text_in": 5.00, "text_out": 10.00, "image_in": 8.00, "image_out": 32.00}
# Audio (pricing page, "Transcription and speech generation").
WHISPER_PER_MINUTE = 0.006
TTS_PER_M_CHARS, TTS_HD_PER_M_CHARS = 15.00, 30.00
GPT_4O_TRANSCRIBE = {"text_in": 2.50, "audio_in": 6.00, "text_out": 10.00}
GPT_4O_MINI_TRANSCRIBE = {"text_in": 1.25, "audio_in": 3.00, "text_out": 5.00}


def image_usage(text: int, image: int, output: int, output_text: int | None = None) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "input_tokens": text + image,
        "input_tokens_details": {"text_tokens": text, "image_tokens": image},
        "output_tokens": output,
        "total_tokens": text + image + output,
    }
    if output_text is not None:
        usage["output_tokens_details"] = {"image_tokens": output - output_text, "text_tokens": output_text}
    return {"created": 1, "data": [{"b64_json": "AA=="}], "usage": usage}


def token_transcript(text: int, audio: int, output: int) -> dict[str, Any]:
    usage = {
        "type": "tokens",
        "input_tokens": text + audio,
        "input_token_details": {"text_tokens": text, "audio_tokens": audio},
        "output_tokens": output,
        "total_tokens": text + audio + output,
    }
    return {"text": "hello", "usage": usage}


def priced(prices: dict[str, float], **tokens: int) -> float:
    """USD for token counts by kind at per-1M prices: each kind of token has its own rate on the pricing page."""
    return sum(n * prices[kind] / M for kind, n in tokens.items() if n)


def image_tokens(
    prices: dict[str, float], text: int, image: int, output: int, output_text: int | None = None
) -> tuple[dict[str, Any], float]:
    """A GPT Image answer reporting these tokens, and their price: text and image in, image and text out."""
    text_out = output_text or 0
    cost = priced(prices, text_in=text, image_in=image, image_out=output - text_out, text_out=text_out)
    return image_usage(text, image, output, output_text), cost


def transcript_tokens(prices: dict[str, float], text: int, audio: int, output: int) -> tuple[dict[str, Any], float]:
    """A token-billed transcript reporting these tokens, and their price: text and audio in, text out."""
    return token_transcript(text, audio, output), priced(prices, text_in=text, audio_in=audio, text_out=output)


MB = 1_000_000
# (id, endpoint, model, fields, body_bytes, answer, expected USD, expected source)
CASES: list[tuple[str, str, str, dict[str, Any], int, Any, float, str]] = [
    (
        "dall-e-3 hd 1792x1024",
        "images/generations",
        "dall-e-3",
        {"prompt": "a fox", "quality": "hd", "size": "1792x1024", "n": 1},
        80,
        {"data": [{"url": "u"}]},
        DALL_E_3_HD_WIDE,
        "openai-pricing:dall-e-3",
    ),
    (
        "dall-e-3 defaults: standard 1024x1024",
        "images/generations",
        "dall-e-3",
        {"prompt": "a fox"},
        40,
        {"data": [{"url": "u"}]},
        DALL_E_3_STANDARD_SQUARE,
        "openai-pricing:dall-e-3",
    ),
    (
        "dall-e-3 standard 1024x1792",
        "images/generations",
        "dall-e-3",
        {"prompt": "a fox", "size": "1024x1792", "quality": "standard"},
        80,
        None,
        DALL_E_3_STANDARD_WIDE,
        "openai-pricing:dall-e-3",
    ),
    (
        "dall-e-3 hd square",
        "images/generations",
        "dall-e-3",
        {"prompt": "a fox", "size": "1024x1024", "quality": "hd"},
        80,
        None,
        DALL_E_3_HD_SQUARE,
        "openai-pricing:dall-e-3",
    ),
    (
        "dall-e-2 edits, multipart n='3' at 256",
        "images/edits",
        "dall-e-2",
        {"model": "dall-e-2", "n": "3", "size": "256x256", "prompt": "sky"},
        200_000,
        {"data": [{"url": "a"}, {"url": "b"}, {"url": "c"}]},
        3 * DALL_E_2_256,
        "openai-pricing:dall-e-2",
    ),
    (
        "dall-e-2 variations, multipart n='2' at 512",
        "images/variations",
        "dall-e-2",
        {"n": "2", "size": "512x512"},
        300_000,
        None,
        2 * DALL_E_2_512,
        "openai-pricing:dall-e-2",
    ),
    (
        "dall-e-2 default size, JSON n=2",
        "images/generations",
        "dall-e-2",
        {"prompt": "sky", "n": 2},
        50,
        None,
        2 * DALL_E_2_1024,
        "openai-pricing:dall-e-2",
    ),
    (
        "dall-e-2 charged for the 2 images made of 4 asked",
        "images/generations",
        "dall-e-2",
        {"prompt": "sky", "n": 4},
        50,
        {"data": [{"url": "a"}, {"url": "b"}]},
        2 * DALL_E_2_1024,
        "openai-pricing:dall-e-2",
    ),
    (
        "gpt-image-1 high square from usage",
        "images/generations",
        "gpt-image-1",
        {"prompt": "an otter", "quality": "high", "size": "1024x1024"},
        90,
        *image_tokens(GPT_IMAGE_1, text=50, image=0, output=4160),
        "openai-pricing:gpt-image-1(tokens)",
    ),
    (
        "gpt-image-1 edit with image input",
        "images/edits",
        "gpt-image-1",
        {"prompt": "make it blue", "quality": "medium", "size": "1024x1024", "n": "1"},
        2 * MB,
        *image_tokens(GPT_IMAGE_1, text=200, image=1000, output=1056),
        "openai-pricing:gpt-image-1(tokens)",
    ),
    (
        "gpt-image-1 n=2 (string) low portrait",
        "images/edits",
        "gpt-image-1",
        {"prompt": "p", "quality": "low", "size": "1024x1536", "n": "2"},
        MB,
        *image_tokens(GPT_IMAGE_1, text=10, image=300, output=2 * 408),
        "openai-pricing:gpt-image-1(tokens)",
    ),
    (
        "gpt-image-1-mini low square",
        "images/generations",
        "gpt-image-1-mini",
        {"prompt": "a cat", "quality": "low", "size": "1024x1024"},
        80,
        *image_tokens(GPT_IMAGE_1_MINI, text=20, image=0, output=272),
        "openai-pricing:gpt-image-1-mini(tokens)",
    ),
    (
        "gpt-image-1.5 text and image output",
        "images/generations",
        "gpt-image-1.5",
        {"prompt": "a poster", "quality": "high", "size": "1024x1024"},
        80,
        *image_tokens(GPT_IMAGE_1_5, text=30, image=0, output=4160 + 100, output_text=100),
        "openai-pricing:gpt-image-1.5(tokens)",
    ),
    (
        "whisper-1 usage seconds 95",
        "audio/transcriptions",
        "whisper-1",
        {"model": "whisper-1"},
        MB,
        {"text": "hi", "usage": {"type": "duration", "seconds": 95}},
        95 / 60 * WHISPER_PER_MINUTE,
        "openai-pricing:whisper-1",
    ),
    (
        "whisper-1 verbose_json duration 12.3 s, billed 13 s",
        "audio/transcriptions",
        "whisper-1",
        {"model": "whisper-1", "response_format": "verbose_json"},
        MB,
        {"task": "transcribe", "language": "english", "duration": 12.3, "text": "hi"},
        13 / 60 * WHISPER_PER_MINUTE,
        "openai-pricing:whisper-1",
    ),
    (
        "whisper-1 translation 95 s",
        "audio/translations",
        "whisper-1",
        {"model": "whisper-1"},
        MB,
        {"text": "hi", "usage": {"type": "duration", "seconds": 95.0}},
        95 / 60 * WHISPER_PER_MINUTE,
        "openai-pricing:whisper-1",
    ),
    (
        "gpt-4o-transcribe tokens",
        "audio/transcriptions",
        "gpt-4o-transcribe",
        {"model": "gpt-4o-transcribe"},
        MB,
        *transcript_tokens(GPT_4O_TRANSCRIBE, text=14, audio=1000, output=250),
        "openai-pricing:gpt-4o-transcribe(tokens)",
    ),
    (
        "gpt-4o-mini-transcribe snapshot tokens",
        "audio/transcriptions",
        "gpt-4o-mini-transcribe-2025-12-15",
        {},
        MB,
        *transcript_tokens(GPT_4O_MINI_TRANSCRIBE, text=10, audio=500, output=120),
        "openai-pricing:gpt-4o-mini-transcribe(tokens)",
    ),
    (
        "tts-1-hd 1000 characters",
        "audio/speech",
        "tts-1-hd",
        {"model": "tts-1-hd", "input": "x" * 1000, "voice": "alloy"},
        1100,
        None,
        0.03,
        "openai-pricing:tts-1-hd",
    ),
    (
        "tts-1 the longest input",
        "audio/speech",
        "tts-1",
        {"input": "é" * 4096, "voice": "alloy"},
        9000,
        None,
        4096 * TTS_PER_M_CHARS / M,
        "openai-pricing:tts-1",
    ),
]


@pytest.mark.parametrize(
    ("endpoint", "model", "fields", "body_bytes", "answer", "expected", "source"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_priced_as_openai_bills(
    endpoint: str, model: str, fields: dict[str, Any], body_bytes: int, answer: Any, expected: float, source: str
) -> None:
    charge = media_cost(endpoint, model, fields, body_bytes, answer)
    assert charge.cost_usd == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert charge.source == source
    assert charge.cost_usd <= media_reservation(endpoint, model, fields, body_bytes) + 1e-12
    assert is_media_priced(model, endpoint)


def test_tokens_are_recorded_when_the_answer_reports_them() -> None:
    charge = media_cost("images/edits", "gpt-image-1", {"prompt": "p"}, MB, image_usage(200, 1000, 1056))
    assert (charge.input_tokens, charge.output_tokens) == (1200, 1056)
    charge = media_cost("audio/transcriptions", "gpt-4o-transcribe", {}, MB, token_transcript(14, 1000, 250))
    assert (charge.input_tokens, charge.audio_input_tokens, charge.output_tokens) == (1014, 1000, 250)


# The pricing page's per-image GPT Image prices are the image guide's output-token counts at the output rate,
# rounded (loosely: $0.167 for 4,160 × $40/1M = $0.1664, and $0.25 for both 6,240 and 6,208 tokens): the
# documented counts priced from usage must land within a fifth of a cent of them.
PUBLISHED_PER_IMAGE = [
    # (model, quality, size, output tokens (image guide), USD per image (pricing page))
    ("gpt-image-1", "low", "1024x1024", 272, 0.011),
    ("gpt-image-1", "medium", "1024x1024", 1056, 0.042),
    ("gpt-image-1", "medium", "1536x1024", 1568, 0.063),
    ("gpt-image-1", "high", "1024x1024", 4160, 0.167),
    ("gpt-image-1", "high", "1024x1536", 6240, 0.25),
    ("gpt-image-1", "high", "1536x1024", 6208, 0.25),
    ("gpt-image-1.5", "low", "1024x1024", 272, 0.009),
    ("gpt-image-1.5", "medium", "1024x1024", 1056, 0.034),
    ("gpt-image-1.5", "high", "1024x1024", 4160, 0.133),
    ("gpt-image-1.5", "high", "1024x1536", 6240, 0.20),
]


@pytest.mark.parametrize(("model", "quality", "size", "tokens", "usd"), PUBLISHED_PER_IMAGE)
def test_documented_output_tokens_cost_the_published_per_image_price(
    model: str, quality: str, size: str, tokens: int, usd: float
) -> None:
    fields = {"prompt": "x", "quality": quality, "size": size}
    charge = media_cost("images/generations", model, fields, 60, image_usage(text=0, image=0, output=tokens))
    assert abs(charge.cost_usd - usd) <= 0.002
    assert media_reservation("images/generations", model, fields, 60) >= charge.cost_usd


def test_string_n_in_multipart_counts_like_a_json_number() -> None:
    for endpoint, model in (("images/edits", "dall-e-2"), ("images/edits", "gpt-image-1")):
        as_text = media_reservation(endpoint, model, {"n": "4", "size": "512x512", "prompt": "p"}, MB)
        as_int = media_reservation(endpoint, model, {"n": 4, "size": "512x512", "prompt": "p"}, MB)
        assert as_text == as_int
    assert media_reservation("images/variations", "dall-e-2", {"n": "4", "size": "512x512"}, MB) == pytest.approx(
        4 * DALL_E_2_512
    )


def test_n_is_bounded() -> None:
    fields = {"prompt": "p", "size": "1024x1024"}
    # dall-e-3 takes only n=1; any n is cut to 10 images.
    assert media_reservation("images/generations", "dall-e-3", {**fields, "n": 5}, 60) == pytest.approx(0.04)
    assert media_reservation("images/generations", "dall-e-2", {**fields, "n": 500}, 60) == pytest.approx(10 * 0.02)
    assert media_reservation("images/generations", "dall-e-2", {**fields, "n": "lots"}, 60) == pytest.approx(10 * 0.02)
    assert media_reservation("images/generations", "dall-e-2", {**fields, "n": 0}, 60) == pytest.approx(0.02)


def test_gpt_image_reservation_is_the_documented_output_plus_the_prompt() -> None:
    # 2 images high portrait: 2 × 6,240 output tokens; the prompt "hi" is 2 bytes + our 256 framing tokens.
    fields = {"prompt": "hi", "quality": "high", "size": "1024x1536", "n": 2}
    expected = (2 + 256) * GPT_IMAGE_1["text_in"] / M + 2 * 6240 * GPT_IMAGE_1["image_out"] / M
    assert media_reservation("images/generations", "gpt-image-1", fields, 80) == pytest.approx(expected)
    # "auto" quality and size (the defaults) are reserved at the largest: high, 6,240 tokens.
    auto = {"prompt": "hi", "n": 2}
    assert media_reservation("images/generations", "gpt-image-1", auto, 80) == pytest.approx(expected)
    # Streaming partial images add 100 output tokens each (image guide).
    partial = {**fields, "partial_images": "3"}
    more = 2 * 3 * 100 * GPT_IMAGE_1["image_out"] / M
    assert media_reservation("images/generations", "gpt-image-1", partial, 80) == pytest.approx(expected + more)


def test_gpt_image_edit_reserves_sixteen_images_and_a_mask() -> None:
    fields = {"prompt": "hi", "quality": "low", "size": "1024x1024"}
    # 17 input images × our 8,192-token bound, at the image input rate.
    expected = (2 + 256) * 5 / M + 17 * 8192 * 10 / M + 272 * 40 / M
    assert media_reservation("images/edits", "gpt-image-1", fields, 5 * MB) == pytest.approx(expected)


def test_whisper_reservation_from_the_file_size() -> None:
    # 1 MB at 6 kbit/s plays at most 1,000,000 × 8 / 6,000 = 1,333.3 s: 1,334 s reserved.
    assert media_reservation("audio/transcriptions", "whisper-1", {}, MB) == pytest.approx(1334 / 60 * 0.006)
    # OpenAI takes at most 25 MB: 26,214,400 bytes -> 34,952.5 s -> 34,953 s, whatever the body claims.
    top = 34953 / 60 * 0.006
    assert media_reservation("audio/transcriptions", "whisper-1", {}, 10**9) == pytest.approx(top)
    # Never below a minute's worth.
    assert media_reservation("audio/transcriptions", "whisper-1", {}, 100) == pytest.approx(0.006)


def test_whisper_seconds_beyond_the_file_are_clamped() -> None:
    answer = {"usage": {"type": "duration", "seconds": 10**9}}
    charge = media_cost("audio/transcriptions", "whisper-1", {}, MB, answer)
    assert charge.cost_usd == pytest.approx(1334 / 60 * 0.006)


def test_token_transcription_reservation() -> None:
    # 100 kB -> 134 s: 2,680 audio tokens (20/s), max(2,000, 134 × 15) = 2,010 transcript tokens,
    # min(body, 16,000) + 256 text input tokens.
    expected = 16256 * 2.50 / M + 2680 * 6.00 / M + 2010 * 10.00 / M
    assert media_reservation("audio/transcriptions", "gpt-4o-transcribe", {}, 100_000) == pytest.approx(expected)
    # The models refuse audio past 1,500 s: a 25 MB file is reserved for 1,500 s.
    expected = 16256 * 1.25 / M + 1500 * 20 * 3.00 / M + 1500 * 15 * 5.00 / M
    assert media_reservation("audio/transcriptions", "gpt-4o-mini-transcribe", {}, 10**9) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("model", "answer"),
    [
        ("whisper-1", "plain text transcript"),  # response_format=text
        ("whisper-1", None),  # srt / vtt, unparsable
        ("whisper-1", {"text": "no usage"}),
        ("gpt-4o-transcribe", {"text": "no usage"}),
        ("gpt-4o-transcribe", {"text": "t", "usage": {"type": "duration", "seconds": 3}}),
    ],
)
def test_an_answer_that_does_not_say_is_charged_the_reservation(model: str, answer: Any) -> None:
    charge = media_cost("audio/transcriptions", model, {}, MB, answer)
    assert charge.source == RESERVATION
    assert charge.cost_usd == media_reservation("audio/transcriptions", model, {}, MB) > 0


def test_gpt_image_without_usage_is_charged_the_reservation() -> None:
    fields = {"prompt": "p", "quality": "low", "size": "1024x1024"}
    charge = media_cost("images/generations", "gpt-image-1", fields, 60, {"data": [{"url": "u"}]})
    assert charge.source == RESERVATION
    assert charge.cost_usd == media_reservation("images/generations", "gpt-image-1", fields, 60)


def test_mini_tts_is_charged_its_bound() -> None:
    # The answer is audio: text input ≤ 1 token a byte (+64), audio output ≤ 10 tokens a character.
    fields = {"input": "x" * 1000, "instructions": "calm"}
    expected = (1000 + 4 + 64) * 0.60 / M + 1000 * 10 * 12.00 / M
    charge = media_cost("audio/speech", "gpt-4o-mini-tts-2025-12-15", fields, 1100, None)
    assert charge.cost_usd == pytest.approx(expected)
    assert charge.source == RESERVATION
    # Slower speech is longer: speed 0.5 doubles the audio bound.
    slow = media_reservation("audio/speech", "gpt-4o-mini-tts", {**fields, "speed": 0.5}, 1100)
    assert slow == pytest.approx((1000 + 4 + 64) * 0.60 / M + 2 * 1000 * 10 * 12.00 / M)


def test_mini_tts_streamed_is_charged_the_tokens_reported_within_its_bound() -> None:
    """Speech streamed as SSE ends with its usage: those tokens are charged, never more than the request allows."""
    fields = {"input": "x" * 100}
    said = {"usage": {"input_tokens": 30, "output_tokens": 400, "total_tokens": 430}}
    charge = media_cost("audio/speech", "gpt-4o-mini-tts", fields, 120, said)
    assert charge.cost_usd == pytest.approx(30 * 0.60 / M + 400 * 12.00 / M)
    assert charge.source == "openai-pricing:gpt-4o-mini-tts(tokens)"
    assert (charge.input_tokens, charge.output_tokens, charge.audio_output_tokens) == (30, 400, 400)
    absurd = media_cost(
        "audio/speech", "gpt-4o-mini-tts", fields, 120, {"usage": {"input_tokens": 10**9, "output_tokens": 10**9}}
    )
    assert (absurd.input_tokens, absurd.output_tokens) == (100 + 64, 100 * 10)  # held to the bound
    assert absurd.cost_usd == pytest.approx(media_reservation("audio/speech", "gpt-4o-mini-tts", fields, 120))
    per_char = media_cost("audio/speech", "tts-1", fields, 120, said)
    assert per_char.cost_usd == pytest.approx(100 * 15.00 / M), "tts-1 is billed per character, whatever it says"


@pytest.mark.parametrize(
    ("endpoint", "fields", "body_bytes", "known"),
    [
        ("images/generations", {"prompt": "p", "n": 2}, 60, ["dall-e-2", "dall-e-3", "gpt-image-1", "gpt-image-1.5"]),
        ("images/edits", {"prompt": "p", "n": "3"}, MB, ["dall-e-2", "gpt-image-1", "gpt-image-1-mini"]),
        ("images/variations", {"n": "3"}, MB, ["dall-e-2"]),
        ("audio/speech", {"input": "hello " * 600}, 4000, ["tts-1", "tts-1-hd", "gpt-4o-mini-tts"]),
        ("audio/transcriptions", {}, 3 * MB, ["whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe"]),
        ("audio/translations", {}, 100_000, ["whisper-1", "gpt-4o-transcribe"]),
    ],
)
def test_unknown_models_are_charged_the_dearest(
    endpoint: str, fields: dict[str, Any], body_bytes: int, known: list[str]
) -> None:
    for unknown in ("gpt-image-9", "", None, "whisper-2"):
        assert not is_media_priced(unknown, endpoint)
        reservation = media_reservation(endpoint, unknown, fields, body_bytes)
        charge = media_cost(endpoint, unknown, fields, body_bytes, {"usage": {"input_tokens": 1, "output_tokens": 1}})
        assert charge.source == CONSERVATIVE and charge.cost_usd == reservation
        assert reservation >= max(media_reservation(endpoint, m, fields, body_bytes) for m in known)
    # dall-e-3 at the dearest quality and size, per image.
    if endpoint == "images/generations":
        assert media_reservation(endpoint, "gpt-image-9", fields, body_bytes) >= 2 * DALL_E_3_HD_WIDE


def test_a_model_priced_elsewhere_is_unknown_here() -> None:
    assert is_media_priced("dall-e-2", "images/variations")
    assert not is_media_priced("gpt-image-1", "images/variations")
    assert not is_media_priced("dall-e-3", "images/edits")
    assert not is_media_priced("tts-1", "audio/transcriptions")
    assert is_media_priced("DALL-E-3 ", "v1/images/generations")


GARBAGE_ANSWERS: list[Any] = [
    None,
    [],
    [1, 2],
    "",
    "a transcript",
    42,
    -1.5,
    float("nan"),
    {},
    {"usage": None},
    {"usage": "lots"},
    {"usage": []},
    {"usage": {"input_tokens": -5, "output_tokens": -1}},
    {"usage": {"input_tokens": "10", "output_tokens": "4160"}},
    {"usage": {"input_tokens": True, "output_tokens": True}},
    {"usage": {"input_tokens": float("nan"), "output_tokens": float("inf")}},
    {"usage": {"input_tokens": 10**30, "output_tokens": 10**30, "input_tokens_details": "x"}},
    {"usage": {"input_tokens": 0, "output_tokens": 0}},
    {"usage": {"type": "duration", "seconds": -95}},
    {"usage": {"type": "duration", "seconds": "95"}},
    {"usage": {"type": "duration", "seconds": float("nan")}},
    {"usage": {"type": "tokens", "input_tokens": 1e300, "output_tokens": 1e300}},
    {"duration": [], "usage": {"type": ["duration"], "seconds": {}}},
    {"data": "images", "usage": {"input_tokens_details": {"image_tokens": -1}, "output_tokens_details": 7}},
    json.loads('{"usage": {"type": "duration", "seconds": 1e400}, "duration": 1e400}'),
    json.loads('{"usage": {"input_tokens": 1e400, "output_tokens": 1e400, "type": "tokens"}}'),
    json.loads('{"data": [], "usage": {"input_tokens": -1e400, "output_tokens": 1e400}}'),
]
ALL_MODELS = [
    "dall-e-2",
    "dall-e-3",
    "gpt-image-1",
    "gpt-image-1-mini",
    "gpt-image-1.5",
    "tts-1",
    "tts-1-hd",
    "gpt-4o-mini-tts",
    "whisper-1",
    "gpt-4o-transcribe",
    "gpt-4o-mini-transcribe",
    "gpt-image-2",
    None,
]


@pytest.mark.parametrize("answer", GARBAGE_ANSWERS, ids=range(len(GARBAGE_ANSWERS)))
def test_garbage_answers_never_raise(answer: Any) -> None:
    for endpoint in MEDIA_ENDPOINTS:
        for model in ALL_MODELS:
            fields = {"prompt": "p", "n": "2", "input": "hello"}
            reservation = media_reservation(endpoint, model, fields, MB)
            charge = media_cost(endpoint, model, fields, MB, answer)
            assert 0 < charge.cost_usd <= reservation + 1e-12
            assert math.isfinite(charge.cost_usd)


def test_absurd_seconds_and_tokens_are_clamped_to_the_reservation() -> None:
    huge = json.loads('{"usage": {"type": "duration", "seconds": 1e400}}')
    charge = media_cost("audio/transcriptions", "whisper-1", {}, MB, huge)
    assert charge.cost_usd == media_reservation("audio/transcriptions", "whisper-1", {}, MB)
    huge_tokens = token_transcript(10**12, 10**12, 10**12)
    charge = media_cost("audio/transcriptions", "gpt-4o-transcribe", {}, MB, huge_tokens)
    assert charge.cost_usd == pytest.approx(media_reservation("audio/transcriptions", "gpt-4o-transcribe", {}, MB))
    fields = {"prompt": "p", "quality": "low", "size": "1024x1024"}
    charge = media_cost("images/generations", "gpt-image-1", fields, 60, image_usage(10**9, 10**9, 10**9))
    # A generation takes no image input: only the prompt's tokens and 272 output tokens are possible.
    assert charge.cost_usd == pytest.approx((1 + 256) * 5 / M + 272 * 40 / M)


def test_odd_requests_never_raise() -> None:
    for endpoint in (*MEDIA_ENDPOINTS, "chat/completions", ""):
        for fields in ({}, {"n": None, "size": 7, "quality": ["hd"], "input": 5, "speed": "fast"}, None):
            for body_bytes in (-1, 0, 10**12, None, True, 2.5):
                reservation = media_reservation(endpoint, "whisper-1", fields, body_bytes)  # type: ignore[arg-type]
                charge = media_cost(endpoint, "dall-e-2", fields, body_bytes, None)  # type: ignore[arg-type]
                assert reservation >= 0 and charge.cost_usd >= 0


# -- Property: whatever the request and the answer, 0 <= cost <= reservation. ------------------------------

NUMBERS = st.one_of(
    st.integers(-10, 10**7),
    st.integers(min_value=10**12, max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=12))
FIELD_VALUES = {
    "n": st.one_of(st.integers(-3, 20), st.integers(-3, 20).map(str), SCALARS),
    "size": st.one_of(
        st.sampled_from(
            ["256x256", "512x512", "1024x1024", "1024x1536", "1536x1024", "1024x1792", "1792x1024", "auto", "9x9"]
        ),
        SCALARS,
    ),
    "quality": st.one_of(st.sampled_from(["standard", "hd", "low", "medium", "high", "auto", " HD "]), SCALARS),
    "prompt": st.one_of(st.text(max_size=300), SCALARS),
    "input": st.one_of(st.text(max_size=300), st.just("w" * 5000), SCALARS),
    "instructions": st.one_of(st.text(max_size=50), SCALARS),
    "speed": st.one_of(st.floats(0, 8), st.sampled_from(["0.25", "4", "1"]), SCALARS),
    "partial_images": st.one_of(st.integers(-1, 5), st.integers(0, 3).map(str), SCALARS),
}
FIELDS = st.fixed_dictionaries({}, optional=FIELD_VALUES)
DETAILS = st.one_of(
    SCALARS,
    st.fixed_dictionaries({}, optional={"text_tokens": NUMBERS, "image_tokens": NUMBERS, "audio_tokens": NUMBERS}),
)
USAGE = st.one_of(
    SCALARS,
    st.fixed_dictionaries(
        {},
        optional={
            "type": st.sampled_from(["tokens", "duration", "other"]),
            "seconds": st.one_of(NUMBERS, SCALARS),
            "input_tokens": st.one_of(NUMBERS, SCALARS),
            "output_tokens": st.one_of(NUMBERS, SCALARS),
            "input_tokens_details": DETAILS,
            "input_token_details": DETAILS,
            "output_tokens_details": DETAILS,
        },
    ),
)
ANSWERS = st.one_of(
    SCALARS,
    st.lists(SCALARS, max_size=3),
    st.fixed_dictionaries(
        {},
        optional={
            "usage": USAGE,
            "duration": st.one_of(NUMBERS, SCALARS),
            "data": st.one_of(st.lists(st.just({"url": "u"}), max_size=12), SCALARS),
        },
    ),
)
MODELS = st.one_of(
    st.sampled_from([*ALL_MODELS, "gpt-4o-mini-tts-2025-12-15", "Whisper-1", "dall-e-4", ""]),
    st.text(max_size=10),
)
BODY_BYTES = st.one_of(st.integers(-100, 3 * 10**7), st.just(10**12))


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(MEDIA_ENDPOINTS), MODELS, FIELDS, BODY_BYTES, ANSWERS)
def test_cost_is_never_above_the_reservation(
    endpoint: str, model: str | None, fields: dict[str, Any], body_bytes: int, answer: Any
) -> None:
    reservation = media_reservation(endpoint, model, fields, body_bytes)
    charge = media_cost(endpoint, model, fields, body_bytes, answer)
    assert math.isfinite(reservation) and reservation > 0, "a priced call is never reserved at zero"
    assert 0 < charge.cost_usd <= reservation + 1e-12
    assert min(charge.input_tokens, charge.output_tokens, charge.audio_input_tokens) >= 0
