"""A record's usage-log line is exactly what json.dumps writes for its fields (CONTRACT §5), whatever they hold:
any text (emoji, lone surrogates, quotes, control characters), huge or negative numbers, NaN, tool tallies."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from picometer.record import RECORD_FIELDS, Record

texts = st.text(st.characters(codec=None), max_size=20)  # any code point, lone surrogates included
values: dict[type, st.SearchStrategy[Any]] = {
    str: texts,
    int: st.integers(-(2**70), 2**70),
    float: st.floats(allow_nan=True, allow_infinity=True),
    bool: st.booleans(),
}


def field_values(field: dataclasses.Field[Any]) -> st.SearchStrategy[Any]:
    kinds = [k for k in values if k.__name__ in str(field.type)]
    choices = [values[k] for k in kinds]
    if "None" in str(field.type):
        choices.append(st.none())
    if "dict" in str(field.type):
        choices.append(st.dictionaries(texts, st.integers(0, 10_000), max_size=3))
    if "float" in str(field.type):
        choices.append(st.integers(0, 10**9))  # an int where a float is kept: written as the int it is
    return st.one_of(*choices)


records = st.builds(Record, **{f.name: field_values(f) for f in dataclasses.fields(Record) if f.name in RECORD_FIELDS})


@given(records)
def test_the_line_is_what_json_dumps_writes(rec: Record) -> None:
    data = dataclasses.asdict(rec)
    if data["prompt"] is None:
        del data["prompt"]  # kept only with store_prompts = "redacted"
    assert rec.to_json() == json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def test_a_plain_record_reads_back_field_for_field() -> None:
    rec = Record(ts="2026-11-30T22:00:00.123Z", request_id="r1", model="gpt-4o-mini", cost_usd=1.5e-05, prompt="hi")
    rec.tool_calls, rec.workflow = {"web_search": 2}, 'naïve 🚀 "quoted"'
    assert json.loads(rec.to_json()) == dataclasses.asdict(rec)
    assert "prompt" not in json.loads(Record(ts="t", request_id="r2").to_json())
