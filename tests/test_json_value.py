"""metering.json_value.loads reads every request body, answer and stream event: for any input it gives what
json.loads gives, the same value or the same error; JSON nested too deep is a ValueError, not a RecursionError."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from picometer.metering.json_value import TooDeep, loads

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
space = st.text(alphabet=" \t\n\r", max_size=3)


def outcome(parse: Any, data: bytes | str) -> tuple[str, str]:
    """What parsing gives, comparable: the value as JSON text (NaN included), or the error and its message."""
    try:
        return "value", json.dumps(parse(data), sort_keys=True)
    except (ValueError, RecursionError) as e:
        return type(e).__name__, str(e)


@given(values, space, space, st.booleans(), st.booleans())
def test_any_json_value_reads_as_json_loads_reads_it(
    value: Any, before: str, after: str, ascii_only: bool, as_bytes: bool
) -> None:
    text = before + json.dumps(value, ensure_ascii=ascii_only) + after
    data: bytes | str = text.encode("utf-8", "surrogatepass") if as_bytes else text
    assert outcome(loads, data) == outcome(json.loads, data)


@given(st.binary(max_size=40) | st.text(max_size=40))
@example(b'\xef\xbb\xbf{"a": 1}')  # a UTF-8 BOM: json.loads reads it from bytes, refuses it in text
@example('\ufeff{"a": 1}')
@example(b"\xff\xfe{\x00}\x00")  # UTF-16
@example(b'{"a": "\xed\xa0\x80"}')  # a lone surrogate encoded: json.loads lets it pass
@example(b'{"a": 1} x')
@example(b"NaN")
@example(b"")
def test_anything_else_gives_json_loads_value_or_error(data: bytes | str) -> None:
    assert outcome(loads, data) == outcome(json.loads, data)


def test_too_deep_is_bad_json_to_every_reader() -> None:
    """json.loads raises RecursionError, which no reader of bad JSON expects; here it is a ValueError."""
    deep = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(RecursionError):
        json.loads(deep)
    for data in (deep, deep.decode(), b" " + deep):
        with pytest.raises(TooDeep):
            loads(data)
    assert issubclass(TooDeep, ValueError)
