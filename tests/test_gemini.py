"""The real google-genai client through picometer against a loopback Gemini API: every call one record with
Google's token counts, priced as Google publishes, virtual keys swapped in header and query form, refusals in
Gemini's error shape before anything reaches Google, streams judged by their last chunk."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from google import genai
from google.genai import errors, types

from tests.fake_gemini import REPLY, FakeGemini, GeminiUsage
from tests.servers import Gateways, GatewayServer

PROVIDER_KEY = "AIzaSy-provider-real-key-000000000000"  # what [providers.gemini].api_key resolves to
CLIENT_KEY = "AIzaSy-client-own-key-1111111111111111"  # a client's own Google key, for pass-through
WF_KEY = "pm-greenhouse-0123456789abcdef"  # [workflows.greenhouse].keys
PROMPT = "How warm is the greenhouse tonight, and should I water the tomatoes?"
BODY = {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}]}  # a REST generateContent request
TAILS = [0, 20, 100]

# Google's published Standard-tier prices for text, USD per 1M tokens, from https://ai.google.dev/gemini-api/docs/pricing
# (output includes thinking tokens): (prompt-size limit of the tier, input, output, context-cache read).
# gemini-2.5-pro has a higher tier for prompts over 200k tokens, applied to the whole call.
GOOGLE_PRICES: dict[str, list[tuple[float, float, float, float]]] = {
    "gemini-2.5-flash": [(math.inf, 0.30, 2.50, 0.03)],
    "gemini-2.5-pro": [(200_000, 1.25, 10.00, 0.125), (math.inf, 2.50, 15.00, 0.25)],
}
EMBEDDING_001 = 0.15  # gemini-embedding-001, input only, same page


def google_cost(model: str, meta: types.GenerateContentResponseUsageMetadata) -> float:
    """The call's price worked out by hand from the usageMetadata the client got and the table above."""
    prompt, tool_use, cached = (
        meta.prompt_token_count or 0,
        meta.tool_use_prompt_token_count or 0,
        meta.cached_content_token_count or 0,
    )
    out = (meta.candidates_token_count or 0) + (meta.thoughts_token_count or 0)
    _, inp, outp, cache = next(tier for tier in GOOGLE_PRICES[model] if prompt <= tier[0])
    return ((prompt + tool_use - cached) * inp + cached * cache + out * outp) / 1e6


@pytest.fixture
def gemini() -> Iterator[FakeGemini]:
    with FakeGemini(keys={PROVIDER_KEY, CLIENT_KEY}) as fake:
        yield fake


@pytest.fixture
def make(gemini: FakeGemini, tmp_path: Path) -> Iterator[Gateways]:
    """Gateways with [providers.gemini] on the fake, its key from env:GEMINI_API_KEY, and the greenhouse workflow."""
    sections = {
        "providers": {"gemini": {"kind": "gemini", "base_url": gemini.url, "api_key": "env:GEMINI_API_KEY"}},
        "workflows": {"greenhouse": {"keys": [WF_KEY]}},
    }
    with Gateways(gemini.url, tmp_path, **sections) as gateways:
        yield gateways


@pytest.fixture
def gw(make: Gateways) -> GatewayServer:
    return make(env={"GEMINI_API_KEY": PROVIDER_KEY})


def client(gw: GatewayServer, key: str = WF_KEY, version: str = "v1beta") -> genai.Client:
    """The SDK pointed at picometer; hold it in a variable: a Client closes its connections when collected."""
    return genai.Client(api_key=key, http_options=types.HttpOptions(base_url=f"{gw.url}/gemini", api_version=version))


def post(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(url, json=body, headers=headers, timeout=10, trust_env=False)


def assert_tokens(rec: dict[str, Any], meta: types.GenerateContentResponseUsageMetadata) -> None:
    """The record's tokens are Google's, mapped as the contract says."""
    thoughts = meta.thoughts_token_count or 0
    assert rec["usage_source"] == "provider", rec
    assert rec["input_tokens"] == (meta.prompt_token_count or 0) + (meta.tool_use_prompt_token_count or 0)
    assert rec["cached_input_tokens"] == (meta.cached_content_token_count or 0)
    assert rec["output_tokens"] == (meta.candidates_token_count or 0) + thoughts
    assert rec["reasoning_tokens"] == thoughts


def test_the_fake_speaks_gemini_as_the_sdk_expects(gemini: FakeGemini) -> None:
    # the SDK straight at the fake, no picometer: what the tests below rest on
    sdk = genai.Client(api_key=PROVIDER_KEY, http_options=types.HttpOptions(base_url=gemini.url))
    gemini.usage = GeminiUsage(thoughts=9, cached=2, tool_use=1)
    whole = sdk.models.generate_content(model="gemini-2.5-flash", contents=PROMPT)
    assert whole.text == REPLY and whole.usage_metadata is not None
    meta = whole.usage_metadata
    counts = (meta.thoughts_token_count, meta.cached_content_token_count, meta.tool_use_prompt_token_count)
    assert counts == (9, 2, 1)
    chunks = list(sdk.models.generate_content_stream(model="gemini-2.5-flash", contents=PROMPT))
    assert len(chunks) == gemini.chunks and "".join(c.text or "" for c in chunks) == REPLY
    assert chunks[-1].usage_metadata == meta
    assert sdk.models.count_tokens(model="gemini-2.5-flash", contents=PROMPT).total_tokens == meta.prompt_token_count
    embedded = sdk.models.embed_content(model="gemini-embedding-001", contents=["a", "b"])
    assert embedded.embeddings and len(embedded.embeddings) == 2 and embedded.usage_metadata
    stranger = genai.Client(api_key=WF_KEY, http_options=types.HttpOptions(base_url=gemini.url))
    with pytest.raises(errors.ClientError) as refused:
        stranger.models.generate_content(model="gemini-2.5-flash", contents=PROMPT)
    assert (refused.value.code, refused.value.status) == (400, "INVALID_ARGUMENT")
    assert gemini.key_of(len(gemini.requests) - 1) == (WF_KEY, None)


@pytest.mark.parametrize("version", ["v1beta", "v1"])
def test_generate_is_one_record_with_googles_counts_and_price(
    gemini: FakeGemini, gw: GatewayServer, version: str
) -> None:
    gemini.usage = GeminiUsage(thoughts=40, cached=6, tool_use=3)
    sdk = client(gw, version=version)
    answer = sdk.models.generate_content(model="gemini-2.5-flash", contents=PROMPT)
    assert answer.text == REPLY
    meta = answer.usage_metadata
    assert meta is not None and meta.thoughts_token_count == 40
    [rec] = gw.records(1)
    assert (rec["status"], rec["error_type"], rec["http_status"]) == ("ok", None, 200)
    assert (rec["provider"], rec["model"], rec["stream"], rec["workflow"]) == (
        "gemini",
        "gemini-2.5-flash",
        False,
        "greenhouse",
    )
    assert_tokens(rec, meta)
    assert rec["cost_usd"] == pytest.approx(google_cost("gemini-2.5-flash", meta), rel=1e-9)
    assert gemini.requests[0].path == f"/{version}/models/gemini-2.5-flash:generateContent"


@pytest.mark.parametrize("ms", TAILS)
def test_a_stream_read_to_the_end_is_ok_however_late_the_body_ends(
    gemini: FakeGemini, gw: GatewayServer, ms: int
) -> None:
    gemini.usage = GeminiUsage(thoughts=25, cached=4)
    gemini.tail_ms = ms
    sdk = client(gw)
    chunks = list(sdk.models.generate_content_stream(model="gemini-2.5-flash", contents=PROMPT))
    assert "".join(c.text or "" for c in chunks) == REPLY
    final = chunks[-1]
    assert final.candidates and final.candidates[0].finish_reason == types.FinishReason.STOP
    assert final.usage_metadata is not None
    [rec] = gw.records(1)
    assert (rec["status"], rec["error_type"], rec["http_status"]) == ("ok", None, 200)
    assert (rec["provider"], rec["model"], rec["stream"]) == ("gemini", "gemini-2.5-flash", True)
    assert_tokens(rec, final.usage_metadata)
    assert rec["cost_usd"] == pytest.approx(google_cost("gemini-2.5-flash", final.usage_metadata), rel=1e-9)
    assert gemini.requests[0].path.endswith(":streamGenerateContent?alt=sse")


def test_running_counts_on_every_chunk_are_not_added_up(gemini: FakeGemini, gw: GatewayServer) -> None:
    gemini.usage = GeminiUsage(candidates=120, thoughts=30)
    gemini.running = True
    sdk = client(gw)
    chunks = list(sdk.models.generate_content_stream(model="gemini-2.5-flash", contents=PROMPT))
    assert [c.usage_metadata.candidates_token_count for c in chunks if c.usage_metadata] == [30, 60, 90, 120]
    final = chunks[-1].usage_metadata
    assert final is not None
    [rec] = gw.records(1)
    assert rec["status"] == "ok"
    assert_tokens(rec, final)
    assert rec["output_tokens"] == 150


@pytest.mark.parametrize(("prompt", "stream"), [(120_000, False), (250_000, False), (250_000, True)])
def test_pro_is_priced_at_the_tier_of_its_prompt_size(
    gemini: FakeGemini, gw: GatewayServer, prompt: int, stream: bool
) -> None:
    gemini.usage = GeminiUsage(prompt=prompt, candidates=1_200, thoughts=800, cached=50_000)
    sdk = client(gw)
    models = sdk.models
    if stream:
        meta = list(models.generate_content_stream(model="gemini-2.5-pro", contents=PROMPT))[-1].usage_metadata
    else:
        meta = models.generate_content(model="gemini-2.5-pro", contents=PROMPT).usage_metadata
    assert meta is not None and meta.prompt_token_count == prompt
    [rec] = gw.records(1)
    assert rec["status"] == "ok" and rec["model"] == "gemini-2.5-pro"
    assert_tokens(rec, meta)
    expected = google_cost("gemini-2.5-pro", meta)
    assert rec["cost_usd"] == pytest.approx(expected, rel=1e-9)
    if prompt > 200_000:  # the whole call at the higher rates, not just the part over 200k
        assert expected == pytest.approx((200_000 * 2.50 + 50_000 * 0.25 + 2_000 * 15.00) / 1e6)


def test_count_tokens_is_free_and_passes_under_a_spent_cap(gemini: FakeGemini, make: Gateways) -> None:
    capped = make(env={"GEMINI_API_KEY": PROVIDER_KEY}, budgets={"daily_usd": 0.000001})
    sdk = client(capped)
    counted = sdk.models.count_tokens(model="gemini-2.5-flash", contents=PROMPT)
    assert counted.total_tokens and counted.total_tokens > 0
    [rec] = capped.records(1)
    assert (rec["status"], rec["provider"], rec["model"]) == ("ok", "gemini", "gemini-2.5-flash")
    assert rec["cost_usd"] == 0
    assert gemini.requests[0].path.endswith(":countTokens")


def test_embeddings_are_metered_from_usage_metadata_or_estimated_without_it(
    gemini: FakeGemini, gw: GatewayServer
) -> None:
    # the SDK sends embed_content as :batchEmbedContents; today's API answers with usageMetadata.promptTokenCount
    sdk = client(gw)
    embedded = sdk.models.embed_content(
        model="gemini-embedding-001", contents=["tomatoes like warm nights", "basil does not"]
    )
    assert embedded.embeddings and len(embedded.embeddings) == 2
    assert embedded.usage_metadata is not None and embedded.usage_metadata.prompt_token_count
    counted = embedded.usage_metadata.prompt_token_count
    # an answer without usageMetadata (as the API gave before it reported any): picometer estimates
    gemini.embed_usage = False
    r = post(
        f"{gw.url}/gemini/v1beta/models/gemini-embedding-001:embedContent",
        {"content": {"parts": [{"text": "how much water do peppers need in July"}]}},
        {"x-goog-api-key": WF_KEY},
    )
    assert r.status_code == 200 and r.json()["embedding"]["values"]
    batch, single = gw.records(2)
    assert (batch["status"], batch["provider"], batch["model"], batch["stream"]) == (
        "ok",
        "gemini",
        "gemini-embedding-001",
        False,
    )
    assert (batch["usage_source"], batch["input_tokens"], batch["output_tokens"]) == ("provider", counted, 0)
    assert batch["cost_usd"] == pytest.approx(counted * EMBEDDING_001 / 1e6, rel=1e-9)
    assert (single["status"], single["model"], single["usage_source"]) == ("ok", "gemini-embedding-001", "estimated")
    assert single["input_tokens"] > 0 and single["output_tokens"] == 0
    assert single["cost_usd"] == pytest.approx(single["input_tokens"] * EMBEDDING_001 / 1e6, rel=1e-9)


def test_a_virtual_key_is_swapped_in_header_and_query_form(gemini: FakeGemini, gw: GatewayServer) -> None:
    sdk = client(gw)
    sdk.models.generate_content(model="gemini-2.5-flash", contents=PROMPT)
    base = f"{gw.url}/gemini/v1beta/models/gemini-2.5-flash"
    r = post(f"{base}:generateContent?key={WF_KEY}", BODY)
    assert r.status_code == 200 and r.json()["candidates"][0]["content"]["parts"][0]["text"] == REPLY
    with httpx.stream(
        "POST", f"{base}:streamGenerateContent?alt=sse&key={WF_KEY}", json=BODY, timeout=10, trust_env=False
    ) as s:
        events = [json.loads(line[6:]) for line in s.iter_lines() if line.startswith("data: ")]
    assert events[-1]["candidates"][0]["finishReason"] == "STOP"
    assert gemini.key_of(0) == (PROVIDER_KEY, None), "header form: the provider's key in the header"
    assert gemini.key_of(1) == (None, PROVIDER_KEY), "query form: the provider's key in the query, no header added"
    assert gemini.key_of(2) == (None, PROVIDER_KEY)
    assert "alt=sse" in gemini.requests[2].path
    records = gw.records(3)
    assert [(r["workflow"], r["status"]) for r in records] == [("greenhouse", "ok")] * 3
    assert records[1]["usage_source"] == records[2]["usage_source"] == "provider"
    seen = json.dumps([q.path for q in gemini.requests]) + json.dumps([q.headers for q in gemini.requests])
    assert WF_KEY not in seen
    log = gw.daemon.usage_log.path.read_text()
    assert WF_KEY not in log and PROVIDER_KEY not in log


def test_without_a_provider_key_the_clients_own_key_passes_through(gemini: FakeGemini, make: Gateways) -> None:
    gw = make(providers={"gemini": {"kind": "gemini", "base_url": gemini.url, "api_key": ""}})
    sdk = client(gw, key=CLIENT_KEY)
    sdk.models.generate_content(model="gemini-2.5-flash", contents=PROMPT)
    r = post(f"{gw.url}/gemini/v1beta/models/gemini-2.5-flash:generateContent?key={CLIENT_KEY}", BODY)
    assert r.status_code == 200
    assert gemini.key_of(0) == (CLIENT_KEY, None) and gemini.key_of(1) == (None, CLIENT_KEY)
    assert [r["status"] for r in gw.records(2)] == ["ok", "ok"]
    assert CLIENT_KEY not in gw.daemon.usage_log.path.read_text()


def test_a_budget_refusal_reaches_the_sdk_as_a_gemini_error_and_google_gets_nothing(
    gemini: FakeGemini, make: Gateways
) -> None:
    capped = make(
        env={"GEMINI_API_KEY": PROVIDER_KEY},
        workflows={"greenhouse": {"keys": [WF_KEY], "daily_usd": 0.000001}},
    )
    sdk = client(capped)
    models = sdk.models
    with pytest.raises(errors.ClientError) as whole:
        models.generate_content(model="gemini-2.5-flash", contents=PROMPT)
    with pytest.raises(errors.ClientError) as streamed:
        list(models.generate_content_stream(model="gemini-2.5-flash", contents=PROMPT))
    for e in (whole.value, streamed.value):
        assert (e.code, e.status) == (429, "RESOURCE_EXHAUSTED")
        assert e.message and "the daily cap of workflow 'greenhouse'" in e.message
        assert e.details["error"]["type"] == "budget_exceeded" and e.details["error"]["code"] == 429
    r = post(f"{capped.url}/gemini/v1beta/models/gemini-2.5-flash:generateContent?key={WF_KEY}", BODY)
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    assert r.headers["x-picometer-request-id"]
    assert gemini.requests == [], "a refused call never reaches Google"
    records = capped.records(3)
    assert [(r["status"], r["error_type"], r["http_status"]) for r in records] == [
        ("blocked", "budget_exceeded", 429)
    ] * 3
    assert all(r["workflow"] == "greenhouse" and r["provider"] == "gemini" for r in records)
    assert records[2]["request_id"] == r.headers["x-picometer-request-id"]


def test_an_unpriced_model_is_refused_in_gemini_shape(gemini: FakeGemini, gw: GatewayServer) -> None:
    with pytest.raises(errors.ClientError) as refused:
        sdk = client(gw)
        sdk.models.generate_content(model="gemini-imaginary-9", contents=PROMPT)
    e = refused.value
    assert e.code == 400 and e.details["error"]["type"] == "unpriced_model"
    assert e.message and '[prices."gemini-imaginary-9"]' in e.message
    assert e.status == "INVALID_ARGUMENT"
    assert gemini.requests == []
    [rec] = gw.records(1)
    assert (rec["status"], rec["error_type"], rec["model"]) == ("blocked", "unpriced_model", "gemini-imaginary-9")


def test_a_stream_that_ends_without_its_finish_chunk_is_truncated(gemini: FakeGemini, gw: GatewayServer) -> None:
    gemini.finish = False
    sdk = client(gw)
    chunks = list(sdk.models.generate_content_stream(model="gemini-2.5-flash", contents=PROMPT))
    assert chunks and all(not (c.candidates and c.candidates[0].finish_reason) for c in chunks)
    prompt = chunks[-1].usage_metadata.prompt_token_count if chunks[-1].usage_metadata else None
    [rec] = gw.records(1)
    assert (rec["status"], rec["error_type"], rec["stream"]) == ("error", "stream_truncated", True)
    # the prompt count came with every chunk; the output count never came, so it is estimated, never zero
    assert rec["usage_source"] in ("provider", "estimated") and rec["output_tokens"] > 0
    assert rec["input_tokens"] == prompt if rec["usage_source"] == "provider" else rec["input_tokens"] > 0
    assert rec["cost_usd"] > 0
