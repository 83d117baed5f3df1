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

The images endpoints' prices are in `metering.image_prices`, the audio endpoints' in `metering.audio_prices`;
this module picks between them by endpoint and model.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from picometer.metering.audio_prices import (
    AUDIO_MODELS,
    SPEECH,
    TRANSCRIBE_ENDPOINTS,
    speech_cost,
    speech_reservation,
    transcribe_cost,
    transcribe_reservation,
)
from picometer.metering.image_prices import IMAGE_ENDPOINTS, IMAGE_MODELS, image_cost, image_reservation
from picometer.metering.media_charge import MediaCharge, usd

__all__ = [  # the entry points; MediaCharge is named here because callers take it from this module
    "MEDIA_ENDPOINTS",
    "MediaCharge",
    "is_media_priced",
    "media_cost",
    "media_reservation",
]

MEDIA_ENDPOINTS = (*IMAGE_ENDPOINTS, SPEECH, *TRANSCRIBE_ENDPOINTS)

_SNAPSHOT = re.compile(r"-\d{4}-\d{2}-\d{2}$")
_PRICED_MODELS: dict[str, frozenset[str]] = {**IMAGE_MODELS, **AUDIO_MODELS}


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


def media_reservation(endpoint: str, model: str | None, fields: Mapping[str, Any], body_bytes: int) -> float:
    """Upper bound in USD of what this images/audio call can cost, from the request alone."""
    name = _endpoint(endpoint)
    fields = fields if isinstance(fields, Mapping) else {}
    priced = _priced_model(model, name)
    if name in IMAGE_ENDPOINTS:
        return usd(image_reservation(name, priced, fields, body_bytes))
    if name == SPEECH:
        return usd(speech_reservation(priced, fields))
    if name in TRANSCRIBE_ENDPOINTS:
        return usd(transcribe_reservation(priced, body_bytes))
    return 0.0  # not an images or audio endpoint


def media_cost(
    endpoint: str, model: str | None, fields: Mapping[str, Any], body_bytes: int, answer: Any
) -> MediaCharge:
    """What the call costs, from the request and the provider's parsed JSON answer (None for binary answers
    like speech audio, or an unparsable body; for speech streamed as SSE, its usage as an answer's)."""
    name = _endpoint(endpoint)
    fields = fields if isinstance(fields, Mapping) else {}
    priced = _priced_model(model, name)
    if name in IMAGE_ENDPOINTS:
        return image_cost(name, priced, fields, body_bytes, answer)
    if name == SPEECH:
        return speech_cost(priced, fields, answer)
    if name in TRANSCRIBE_ENDPOINTS:
        return transcribe_cost(priced, body_bytes, answer)
    return MediaCharge(0.0, "unpriced")  # not an images or audio endpoint
