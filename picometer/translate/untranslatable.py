"""The one error translation raises, and the readers that raise it when a body is not of the shape they expect."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any


class Untranslatable(ValueError):
    """This call (or answer) cannot cross between the OpenAI and Anthropic APIs without changing what it means,
    so picometer does not substitute a model of the other API for it."""

    def __init__(self, feature: str, why: str) -> None:
        super().__init__(f"{feature} cannot be translated between the OpenAI and Anthropic APIs: {why}")
        self.feature = feature
        self.why = why


def obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Untranslatable(where, "it is not a JSON object")
    return value


def seq(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise Untranslatable(where, "it is not a JSON array")
    return value


def text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise Untranslatable(where, "it is not a string")
    return value


def number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Untranslatable(where, "it is not a number")
    return float(value)


def count(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise Untranslatable(where, "it is not a whole number of tokens")
    return value


def tokens(value: Any) -> int:
    """A token count from an answer: what is not a whole number counts as none (answers are read, not judged)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def only(body: dict[str, Any], allowed: Iterable[str], where: str, target: str) -> None:
    """Refuse the first field (with a value) that this module does not know how to carry over."""
    known = set(allowed)
    for key, value in body.items():
        if key not in known and value is not None:
            raise Untranslatable(f"`{where}{key}`", f"the {target} API has no counterpart for it")
