"""What OpenAI's audio endpoints (speech, transcriptions, translations) cost, and the most one call can cost.
Pure.

Speech is billed per character (tts-1) or per token (gpt-4o-mini-tts); its answer is audio, so the charge is
read from the request, unless the speech was streamed as SSE, whose last event reports the tokens billed.
Whisper is billed per second of audio, gpt-4o-(mini-)transcribe per token, as the answer reports. Every price
is OpenAI's list price, cited beside its number as in `metering.media`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from picometer.metering.media_charge import CONSERVATIVE, PER_M, PRICED, RESERVATION, MediaCharge, usd
from picometer.metering.media_reading import (
    HUGE,
    MAX_UTF8_BYTES_PER_CHAR,
    PROMPT_OVERHEAD_TOKENS,
    Tokens,
    body_bytes_within,
    count,
    get,
    number,
    reported_tokens,
    utf8_len,
)

SPEECH, TRANSCRIPTIONS, TRANSLATIONS = "audio/speech", "audio/transcriptions", "audio/translations"
TRANSCRIBE_ENDPOINTS = (TRANSCRIPTIONS, TRANSLATIONS)

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

AUDIO_MODELS: dict[str, frozenset[str]] = {  # the models each audio endpoint is priced for
    SPEECH: frozenset({*TTS_USD_PER_CHAR, *SPEECH_TOKEN_RATES}),
    TRANSCRIPTIONS: frozenset({"whisper-1", *TRANSCRIBE_TOKEN_RATES}),
    TRANSLATIONS: frozenset({"whisper-1", *TRANSCRIBE_TOKEN_RATES}),
}


# ---------------------------------------------------------------------------------------------------------
# Speech: the answer is audio, so the charge is read from the request.


def _speech_chars(fields: Mapping[str, Any]) -> int:
    text = fields.get("input")
    return min(max(len(text), 1), MAX_SPEECH_CHARS) if isinstance(text, str) else MAX_SPEECH_CHARS


def _speech_token_bounds(fields: Mapping[str, Any]) -> tuple[int, int]:
    """The most text input and audio output tokens a speech call can be billed."""
    text, instructions = fields.get("input"), fields.get("instructions")
    most_bytes = MAX_SPEECH_CHARS * MAX_UTF8_BYTES_PER_CHAR
    text_bytes = min(utf8_len(text), most_bytes) if isinstance(text, str) else most_bytes
    instruction_bytes = utf8_len(instructions) if isinstance(instructions, str) else 0
    text_in = text_bytes + instruction_bytes + SPEECH_OVERHEAD_TOKENS
    low, high = SPEECH_SPEED_RANGE
    speed = number(fields["speed"]) if fields.get("speed") is not None else Fraction(1)
    slowness = max(Fraction(1), 1 / min(max(speed, low), high)) if speed is not None else 1 / low
    audio_out = math.ceil(_speech_chars(fields) * AUDIO_TOKENS_PER_CHAR * slowness)
    return text_in, audio_out


def _speech_token_bound(rates: SpeechTokenRates, fields: Mapping[str, Any]) -> Fraction:
    text_in, audio_out = _speech_token_bounds(fields)
    return text_in * rates.text_in + audio_out * rates.audio_out


def speech_reservation(model: str | None, fields: Mapping[str, Any]) -> Fraction:
    """The most a speech call can cost; `model` is the table's name, or None when the tables lack it."""
    if model in TTS_USD_PER_CHAR:
        return _speech_chars(fields) * TTS_USD_PER_CHAR[model]
    if model in SPEECH_TOKEN_RATES:
        return _speech_token_bound(SPEECH_TOKEN_RATES[model], fields)
    return max(speech_reservation(known, fields) for known in (*TTS_USD_PER_CHAR, *SPEECH_TOKEN_RATES))


def speech_cost(model: str | None, fields: Mapping[str, Any], answer: Any = None) -> MediaCharge:
    """`answer`: what the answer says it billed, when it says so (speech streamed as SSE ends with
    speech.audio.done and its usage); plain audio says nothing, and a token model is charged its bound."""
    cost = usd(speech_reservation(model, fields))
    if model in TTS_USD_PER_CHAR:
        return MediaCharge(cost, f"{PRICED}{model}")  # characters are known exactly from the request
    usage = get(answer, "usage")
    text_in, audio_out = count(get(usage, "input_tokens")), count(get(usage, "output_tokens"))
    if model not in SPEECH_TOKEN_RATES or text_in is None or audio_out is None or text_in + audio_out == 0:
        return MediaCharge(cost, RESERVATION if model is not None else CONSERVATIVE)
    most_in, most_out = _speech_token_bounds(fields)  # a claim past the request's bound is held to it
    text_in, audio_out = min(text_in, most_in), min(audio_out, most_out)
    rates = SPEECH_TOKEN_RATES[model]
    return MediaCharge(
        usd(text_in * rates.text_in + audio_out * rates.audio_out),
        f"{PRICED}{model}(tokens)",
        input_tokens=text_in,
        output_tokens=audio_out,
        audio_output_tokens=audio_out,
    )


# ---------------------------------------------------------------------------------------------------------
# Transcription and translation.


def _audio_seconds(body_bytes: Any) -> int:
    """The longest the uploaded audio can play, from the body's size at the leanest bitrate."""
    size = body_bytes_within(body_bytes, MAX_UPLOAD_BYTES)
    return max(math.ceil(Fraction(size * 8, MIN_AUDIO_BITS_PER_SECOND)), MIN_AUDIO_SECONDS)


def _transcribe_bounds(body_bytes: Any) -> Tokens:
    seconds = min(_audio_seconds(body_bytes), MAX_TOKEN_MODEL_SECONDS)
    return Tokens(
        media_in=seconds * AUDIO_TOKENS_PER_SECOND,
        text_in=body_bytes_within(body_bytes, TRANSCRIBE_CONTEXT_TOKENS) + PROMPT_OVERHEAD_TOKENS,
        output=max(MAX_TRANSCRIPT_TOKENS, seconds * TEXT_TOKENS_PER_SECOND),
    )


def _transcribe_token_reservation(rates: TranscribeTokenRates, bounds: Tokens) -> Fraction:
    return bounds.text_in * rates.text_in + bounds.media_in * rates.audio_in + bounds.output * rates.text_out


def transcribe_reservation(model: str | None, body_bytes: Any) -> Fraction:
    """The most a transcription or translation can cost; `model` as for speech_reservation."""
    if model == "whisper-1":
        return _audio_seconds(body_bytes) * WHISPER_USD_PER_SECOND
    if model in TRANSCRIBE_TOKEN_RATES:
        return _transcribe_token_reservation(TRANSCRIBE_TOKEN_RATES[model], _transcribe_bounds(body_bytes))
    return max(transcribe_reservation(known, body_bytes) for known in ("whisper-1", *TRANSCRIBE_TOKEN_RATES))


def _reported_seconds(answer: Any) -> Fraction | None:
    """The audio's duration as the answer reports it: usage {"type": "duration", "seconds"} or verbose_json's
    `duration`; None when neither is a finite number of seconds."""
    usage = get(answer, "usage")
    candidates = [get(usage, "seconds") if get(usage, "type") in ("duration", None) else None]
    candidates.append(get(answer, "duration"))
    for value in candidates:
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if isinstance(value, float) and math.isinf(value) and value > 0:
            return Fraction(HUGE)
        if not (isinstance(value, int) or math.isfinite(value)) or value < 0:
            continue
        return Fraction(value)
    return None


def transcribe_cost(model: str | None, body_bytes: Any, answer: Any) -> MediaCharge:
    reservation = usd(transcribe_reservation(model, body_bytes))
    if model is None:
        return MediaCharge(reservation, CONSERVATIVE)
    if model == "whisper-1":
        seconds = _reported_seconds(answer)
        if seconds is None:
            return MediaCharge(reservation, RESERVATION)
        # Billed by the second (to the nearest, per OpenAI); we round up, and charge at least one second.
        billed = min(max(math.ceil(seconds), 1), _audio_seconds(body_bytes))
        return MediaCharge(usd(billed * WHISPER_USD_PER_SECOND), f"{PRICED}{model}")
    usage = get(answer, "usage")
    tokens = None
    if get(usage, "type") in ("tokens", None):  # a duration usage from a token model says nothing billed
        tokens = reported_tokens(usage, "input_token_details", "audio_tokens", _transcribe_bounds(body_bytes))
    if tokens is None:
        return MediaCharge(reservation, RESERVATION)
    audio_in, text_in, output = tokens
    rates = TRANSCRIBE_TOKEN_RATES[model]
    cost = text_in * rates.text_in + audio_in * rates.audio_in + output * rates.text_out
    return MediaCharge(
        usd(cost),
        f"{PRICED}{model}(tokens)",
        input_tokens=text_in + audio_in,
        output_tokens=output,
        audio_input_tokens=audio_in,
    )
