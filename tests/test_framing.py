"""An answer's framing (content type, encoding, length) is read from its header pairs in one pass: for any
headers a provider sends, what httpx's own lookups give."""

from __future__ import annotations

import httpx
from hypothesis import given
from hypothesis import strategies as st

from picometer.gateway.inflow import framing

names = st.sampled_from(["content-type", "Content-Type", "CONTENT-ENCODING", "content-encoding", "Content-Length"])
others = st.sampled_from(["x-ratelimit-remaining-tokens", "openai-processing-ms", "cf-ray", "date", "server"])
values = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20) | st.from_regex(
    r"\A[0-9]{1,8}\Z"
)


@given(st.lists(st.tuples(names | others, values), max_size=12))
def test_framing_is_what_httpx_reads_from_the_same_headers(pairs: list[tuple[str, str]]) -> None:
    headers = httpx.Headers([(name.encode(), value.encode()) for name, value in pairs])
    head = framing(headers)
    assert head.content_type == headers.get("content-type", "")
    assert head.encoding == headers.get("content-encoding", "")
    length = headers.get("content-length", "")
    assert head.length == (int(length) if length.isdigit() else None)


def test_a_provider_answer_head() -> None:
    headers = httpx.Headers(
        [
            (b"Date", b"Tue, 01 Dec 2026 15:00:00 GMT"),
            (b"Content-Type", b"application/json"),
            (b"x-ratelimit-remaining-tokens", b"1999990"),
            (b"Content-Encoding", b"gzip"),
            (b"Content-Length", b"529"),
        ]
    )
    head = framing(headers)
    assert (head.content_type, head.encoding, head.length) == ("application/json", "gzip", 529)
    assert framing(httpx.Headers([])) == framing(httpx.Headers([(b"server", b"x")]))
    assert framing(httpx.Headers([])).length is None
    assert framing(httpx.Headers([(b"content-length", b"\xb2")])).length is None  # a latin-1 digit is no length
