"""The SSE parser: any split of the bytes gives the same events and loses no byte."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from picometer.metering.sse import SSEParser

text = st.text(alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=30)
eol = st.sampled_from(["\n", "\r\n", "\r"])


@st.composite
def streams(draw: st.DrawFn) -> tuple[bytes, list[tuple[str, str]]]:
    """An SSE byte stream and the (event, data) pairs it carries."""
    out, expected = "", []
    for _ in range(draw(st.integers(0, 6))):
        nl = draw(eol)
        if draw(st.booleans()):
            out += ":" + draw(text) + nl
        name = draw(st.one_of(st.just(""), text.filter(lambda s: s and ":" not in s)))
        lines = draw(st.lists(text, min_size=1, max_size=3))
        if name:
            out += f"event: {name}{nl}"
        out += "".join(f"data: {line}{nl}" for line in lines) + nl
        expected.append((name, "\n".join(lines)))
    return out.encode("utf-8"), expected


def parse(data: bytes, cuts: list[int]) -> list:  # type: ignore[type-arg]
    p, events, last = SSEParser(), [], 0
    for cut in sorted(set(cuts)):
        events += p.feed(data[last:cut])
        last = cut
    events += p.feed(data[last:])
    return events + p.close()


@given(streams(), st.lists(st.integers(0, 400), max_size=20))
def test_any_split_gives_the_same_events_and_keeps_every_byte(
    stream: tuple[bytes, list[tuple[str, str]]], cuts: list[int]
) -> None:
    data, expected = stream
    events = parse(data, [c for c in cuts if c <= len(data)])
    assert b"".join(e.raw for e in events) == data
    assert [(e.event, e.data) for e in events if e.data or e.event] == [x for x in expected if x[0] or x[1]]


@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=10))
def test_arbitrary_bytes_never_crash_and_are_kept(data: bytes, cuts: list[int]) -> None:
    events = parse(data, [c for c in cuts if c <= len(data)])
    assert b"".join(e.raw for e in events) == data


def test_crlf_split_between_cr_and_lf_is_one_line_end() -> None:
    p = SSEParser()
    assert p.feed(b"data: a\r") == []
    assert p.feed(b"\n\r") == []
    [event] = p.feed(b"\n")
    assert event.data == "a" and event.raw == b"data: a\r\n\r\n"


def test_non_utf8_data_is_replaced_not_fatal() -> None:
    [event] = SSEParser().feed(b"data: caf\xe9\n\n")
    assert event.data == "caf\ufffd"


@given(st.lists(st.binary(max_size=40).filter(lambda b: b"\n" not in b and b"\r" not in b), max_size=6))
def test_a_chunk_of_one_whole_event_parses_as_any_split_of_it_does(values: list[bytes]) -> None:
    """Streams send one event per chunk: such a chunk (one data line) takes a shorter path, to the same events."""
    data = b"".join(b"data:" + v + b"\n\n" for v in values)
    one_by_one, chunked = SSEParser(), SSEParser()
    by_event = [e for v in values for e in chunked.feed(b"data:" + v + b"\n\n")] + chunked.close()
    by_byte = [e for i in range(len(data)) for e in one_by_one.feed(data[i : i + 1])] + one_by_one.close()
    assert by_event == by_byte
    assert len(by_event) == len(values) and b"".join(e.raw for e in by_event) == data
