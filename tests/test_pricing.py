"""Pricing: equals genai-prices where it has the model, the operator's formula where it does not."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from genai_prices import Usage as GUsage
from genai_prices import calc_price
from hypothesis import given
from hypothesis import strategies as st

from picometer.config import PriceConfig, ProviderConfig, config_from_dict
from picometer.metering.pricing import _CACHE_LIMIT, Pricer, Quote, cost_from_rates
from picometer.metering.usage import Usage

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
OPENAI = ProviderConfig(kind="openai", base_url="https://api.openai.com/v1")
ANTHROPIC = ProviderConfig(kind="anthropic", base_url="https://api.anthropic.com")
LOCAL = ProviderConfig(kind="openai", base_url="http://127.0.0.1:9999/v1")


@st.composite
def usages(draw: st.DrawFn) -> Usage:
    inp = draw(st.integers(0, 400_000))  # past the 200k tier of long-context prices
    cached = draw(st.integers(0, inp))
    write = draw(st.integers(0, inp - cached))
    return Usage(inp, cached, write, draw(st.integers(0, 50_000)))


@given(
    usages(),
    st.sampled_from(
        [
            ("gpt-4o-mini", OPENAI, "openai"),
            ("gpt-4.1", OPENAI, "openai"),
            ("claude-sonnet-4-6", ANTHROPIC, "anthropic"),
            ("claude-haiku-4-5", ANTHROPIC, "anthropic"),
        ]
    ),
)
def test_bundled_prices_match_genai_prices(u: Usage, case: tuple[str, ProviderConfig, str]) -> None:
    model, provider, pid = case
    quote = Pricer({}).cost(provider, [model], u, NOW)
    expected = calc_price(
        GUsage(
            input_tokens=u.input_tokens,
            cache_read_tokens=u.cached_input_tokens,
            cache_write_tokens=u.cache_write_tokens,
            output_tokens=u.output_tokens,
        ),
        model,
        provider_id=pid,
        genai_request_timestamp=NOW,
    ).total_price
    assert quote.cost_usd == pytest.approx(float(expected), rel=1e-9, abs=1e-12)
    assert quote.source.startswith(f"genai-prices:{pid}/")


@given(usages(), st.floats(0, 100), st.floats(0, 100), st.floats(0, 100))
def test_operator_prices_are_linear_and_never_negative(u: Usage, inp: float, out: float, cached: float) -> None:
    pricer = Pricer({"my-model": PriceConfig(input=inp, output=out, cached_input=cached)})
    quote = pricer.cost(LOCAL, ["my-model"], u, NOW)
    uncached = u.input_tokens - u.cached_input_tokens - u.cache_write_tokens
    expected = (
        uncached * inp + u.cached_input_tokens * cached + u.cache_write_tokens * inp + u.output_tokens * out
    ) / 1e6
    assert quote.source == "config" and quote.cost_usd == pytest.approx(expected, abs=1e-9)
    assert quote.cost_usd is not None and quote.cost_usd >= 0
    rates = pricer.rates(LOCAL, "my-model", NOW)
    assert rates is not None
    doubled = Usage(u.input_tokens * 2, u.cached_input_tokens * 2, u.cache_write_tokens * 2, u.output_tokens * 2)
    assert cost_from_rates(rates, doubled) == pytest.approx(2 * cost_from_rates(rates, u), abs=1e-9)


def test_override_wins_over_bundled_data_and_response_model_is_tried_first() -> None:
    pricer = Pricer({"gpt-4o-mini": PriceConfig(input=1.0, output=1.0)})
    u = Usage(input_tokens=1_000_000, output_tokens=0)
    assert pricer.cost(OPENAI, ["gpt-4o-mini"], u, NOW).cost_usd == pytest.approx(1.0)
    dated = Pricer({}).cost(OPENAI, ["gpt-4o-mini-2024-07-18", "gpt-4o-mini"], u, NOW)
    assert dated.cost_usd == pytest.approx(0.15) and dated.source == "genai-prices:openai/gpt-4o-mini"


def test_free_reported_and_unknown() -> None:
    u = Usage(input_tokens=10, output_tokens=10, reported_cost_usd=0.5)
    assert Pricer({}).cost(ProviderConfig(free=True), ["anything"], u, NOW).cost_usd == 0.0
    assert Pricer({}).cost(LOCAL, ["gpt-4o"], u, NOW).source == "provider"
    unknown = Pricer({}).cost(LOCAL, ["no-such-model-anywhere"], Usage(1, 0, 0, 1), NOW)
    assert unknown.cost_usd is None and unknown.source == "unpriced"
    assert not Pricer({}).is_priced(LOCAL, "no-such-model-anywhere", NOW)
    assert Pricer({}).is_priced(LOCAL, "gpt-4o-mini", NOW), "a local OpenAI-compatible URL still prices by kind"


def test_a_provider_naming_a_new_service_tier_on_every_answer_cannot_grow_the_rate_cache() -> None:
    pricer = Pricer({})
    provider = ProviderConfig()
    for i in range(3 * _CACHE_LIMIT):
        tiered = Usage(input_tokens=10, service_tier=f"tier-{i}")
        quote = pricer.cost(provider, ("gpt-4o-mini",), tiered, datetime(2026, 11, 30, tzinfo=UTC))
        assert quote.cost_usd == pytest.approx(10 * 0.15 / 1e6), "an unknown tier is charged the standard price"
    assert len(pricer._steady) <= _CACHE_LIMIT and len(pricer._plain) <= _CACHE_LIMIT


SHARED = Pricer({})  # one pricer for every example: its remembered decisions are what is under test
AZURE = ProviderConfig(kind="openai", base_url="https://x.openai.azure.com/openai")  # gpt-4o-mini at Azure's


@given(
    usages(),
    st.sampled_from(
        [
            ("gpt-4o-mini",),
            ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
            ("no-such-model", "gpt-4.1"),
            ("claude-sonnet-4-5",),  # dearer past 200k input tokens: never remembered
            ("deepseek-chat",),  # prices with a date in them: never remembered
        ]
    ),
    st.sampled_from([None, "flex", "priority"]),
    st.booleans(),
    st.sampled_from([(), (("web_search", 2),)]),
    st.sampled_from([(0, 0, 0), (7, 0, 0), (0, 5, 0), (0, 0, 3)]),
    st.sampled_from([None, 0.0, 0.25]),
)
def test_a_remembered_price_is_the_price_worked_out_afresh(
    u: Usage,
    models: tuple[str, ...],
    tier: str | None,
    batch: bool,
    tools: tuple[tuple[str, int], ...],
    extra: tuple[int, int, int],
    reported: float | None,
) -> None:
    audio_in, audio_out, write_1h = extra
    u = Usage(
        u.input_tokens,
        u.cached_input_tokens,
        u.cache_write_tokens,
        u.output_tokens,
        audio_input_tokens=min(audio_in, u.input_tokens),
        audio_output_tokens=min(audio_out, u.output_tokens),
        cache_write_1h_tokens=min(write_1h, u.cache_write_tokens),
        service_tier=tier,
        tool_calls=tools,
        reported_cost_usd=reported,
    )
    for provider in (OPENAI, AZURE, LOCAL, ANTHROPIC):
        again = [SHARED.cost(provider, models, u, NOW, batch=batch) for _ in range(2)]
        assert again[0] == again[1] == Pricer({}).cost(provider, models, u, NOW, batch=batch)


def test_a_reloaded_price_replaces_a_remembered_one() -> None:
    pricer, u = Pricer({}), Usage(input_tokens=1_000_000)
    assert pricer.cost(OPENAI, ("gpt-4o-mini",), u, NOW) == pricer.cost(OPENAI, ("gpt-4o-mini",), u, NOW)
    reloaded = config_from_dict({"prices": {"gpt-4o-mini": {"input": 2.0, "output": 8.0}}})
    pricer.reconfigure(reloaded)
    assert pricer.cost(OPENAI, ("gpt-4o-mini",), u, NOW) == Quote(2.0, "config")


@pytest.mark.parametrize(
    "unusual",
    [
        Usage(100, 0, 0, 50, audio_input_tokens=20),
        Usage(100, 0, 0, 50, audio_output_tokens=5),
        Usage(100, 0, 0, 50, tool_calls=(("web_search", 1),)),
        Usage(100, 0, 0, 50, reported_cost_usd=0.0),
        Usage(100, 0, 0, 50, service_tier="priority"),
    ],
)
def test_a_remembered_price_is_not_used_for_a_usage_it_does_not_cover(unusual: Usage) -> None:
    pricer = Pricer({})
    pricer.cost(OPENAI, ("gpt-4o-mini",), Usage(100, 0, 0, 50), NOW)  # a plain call: its decision is remembered
    assert pricer._plain
    assert pricer.cost(OPENAI, ("gpt-4o-mini",), unusual, NOW) == Pricer({}).cost(
        OPENAI, ("gpt-4o-mini",), unusual, NOW
    )
