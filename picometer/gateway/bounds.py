"""What a client may send: names of bounded length, JSON of bounded depth, and the numbers that decide a call's
worst case of the right type and range. Pure; each check names the field and the fix."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from picometer.metering.endpoints import Endpoint
from picometer.metering.limits import limit_fields

MAX_NAME_CHARS = 256  # model, workflow and tag names; longer ones are refused, never stored
MAX_JSON_DEPTH = 64
MAX_CHOICES = 128  # OpenAI's own limit for n
MAX_OUTPUT_TOKENS = 10_000_000
TAG_HEADERS = (
    "x-picometer-workflow",
    "x-picometer-env",
    "x-picometer-tenant",
    "x-picometer-prompt-version",
    "x-request-id",
)


class OutOfBounds(ValueError):
    """The request breaks a bound; the message says which field and what is allowed."""


def check_names(headers: Mapping[str, str], path_workflow: str | None) -> None:
    for name in TAG_HEADERS:
        value = headers.get(name)
        if value is not None and len(value) > MAX_NAME_CHARS:
            raise OutOfBounds(f"header {name} is {len(value)} characters long; at most {MAX_NAME_CHARS} are allowed")
    if path_workflow is not None and len(path_workflow) > MAX_NAME_CHARS:
        raise OutOfBounds(f"the workflow in /w/WORKFLOW/ is longer than {MAX_NAME_CHARS} characters")


def check_model(model: Any) -> None:
    if model is not None and not isinstance(model, str):
        raise OutOfBounds("'model' must be a string")
    if isinstance(model, str) and len(model) > MAX_NAME_CHARS:
        raise OutOfBounds(f"'model' is {len(model)} characters long; at most {MAX_NAME_CHARS} are allowed")


def too_deep(obj: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when containers nest more than `limit` levels: walked a level at a time, without recursion. Parsed
    JSON holds only exact dicts and lists, so their types are compared, not checked against ABCs."""
    level, depth = [obj], 0
    while level:
        depth += 1
        below: list[Any] = []
        for item in level:
            kind = type(item)
            if kind is dict:
                children: Any = item.values()
            elif kind is list:
                children = item
            else:
                continue
            if depth > limit:
                return True
            below += [child for child in children if type(child) in _CONTAINERS]
        level = below
    return False


_CONTAINERS = (dict, list)


def _whole(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def check_body(body: Mapping[str, Any], endpoint: Endpoint) -> None:
    """The fields a worst case is computed from: a string `n` or a float max_tokens would make it too small."""
    check_model(body.get("model"))
    if endpoint.shape is None:
        return
    for field, high in (("n", MAX_CHOICES), ("best_of", MAX_CHOICES)):
        if body.get(field) is not None and not _whole(body[field], 1, high):
            raise OutOfBounds(f"'{field}' must be a whole number from 1 to {high}, not {body[field]!r:.40}")
    for field in limit_fields(endpoint.shape, endpoint.name):
        if body.get(field) is not None and not _whole(body[field], 1, MAX_OUTPUT_TOKENS):
            raise OutOfBounds(
                f"'{field}' must be a whole number from 1 to {MAX_OUTPUT_TOKENS}, not {body[field]!r:.40}"
            )
    temperature = body.get("temperature")
    if temperature is not None and not (
        isinstance(temperature, int | float) and not isinstance(temperature, bool) and 0 <= temperature <= 2
    ):
        raise OutOfBounds(f"'temperature' must be a number from 0 to 2, not {temperature!r:.40}")
