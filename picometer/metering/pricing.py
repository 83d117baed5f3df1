"""Dollars for tokens: operator prices first, then genai-prices' bundled data. Never a silent zero."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from copy import copy
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from picometer.config import Config, PriceConfig, ProviderConfig
from picometer.frozen import frozen
from picometer.metering.fees import DEAREST_AUDIO, audio_rates, tools_cost
from picometer.metering.usage import Usage

# The price data's name for a provider kind where the two differ (Gemini's prices are Google's).
PRICE_LIST = {"gemini": "google"}


def price_list(provider: ProviderConfig) -> str:
    return PRICE_LIST.get(provider.kind, provider.kind)


_CACHE_LIMIT = 512  # distinct (provider, model) lookups kept; bounded so memory never grows with traffic


@dataclass(frozen=True, slots=True)
class Rates:
    """Dollars per 1M tokens."""

    input: float
    output: float
    cached_input: float
    cache_write: float
    source: str
    tiered: bool = False  # the price data has higher rates above a context length
    cache_write_1h: float | None = None  # None: the price data has no separate 1-hour rate
    audio_input: float | None = None  # None: the price data has no audio rate
    audio_output: float | None = None


@frozen
class Quote:
    cost_usd: float | None  # None: no price known
    source: str
    tool_cost_usd: float = 0.0  # per-use tool fees, part of cost_usd


def genai_prices_version() -> str:
    from importlib.metadata import version

    return version("genai-prices")


def _decimal(value: Any) -> tuple[float, bool]:
    if value is None:
        return 0.0, False
    if isinstance(value, Decimal | int | float):
        return float(value), False
    return float(value.base), True  # TieredPrices: the base tier


def price_context(usage: Usage, batch: bool) -> tuple[tuple[str, str], ...]:
    """What selects a price variant in the price data: the service tier served, batch processing."""
    ctx = []
    if batch:
        ctx.append(("processing", "batch"))
    if usage.service_tier:
        ctx.append(("service_tier", usage.service_tier))
    return tuple(ctx)


class Pricer:
    def __init__(self, prices: Mapping[str, PriceConfig]) -> None:
        self._overrides = {name.lower(): p for name, p in prices.items()}
        self._lookups: dict[tuple[str, str, str], Any] = {}
        # rates of models whose price has no date or time conditions, by (provider, model, price context)
        self._steady: dict[tuple[str, str, tuple[tuple[str, str], ...]], Rates] = {}
        # The common call's whole decision (no override, steady flat rates, no audio, no tools), by what decides it:
        # (kind, base_url, the models named, price context) -> (rates, source)
        self._plain: dict[tuple[str, str, tuple[str, ...], tuple[tuple[str, str], ...]], tuple[Rates, str]] = {}

    def reconfigure(self, config: Config) -> None:
        """New [prices] in place: every part that holds this pricer charges them from the next call."""
        self._overrides = {name.lower(): p for name, p in config.prices.items()}
        self._lookups.clear()
        self._steady.clear()
        self._plain.clear()

    def _override(self, model: str) -> Rates | None:
        o = self._overrides.get(model.lower())
        if o is None:
            return None
        cached = o.input if o.cached_input is None else o.cached_input
        write = o.input if o.cache_write is None else o.cache_write
        return Rates(
            o.input,
            o.output,
            cached,
            write,
            "config",
            cache_write_1h=write if o.cache_write_1h is None else o.cache_write_1h,
            audio_input=o.input if o.audio_input is None else o.audio_input,
            audio_output=o.output if o.audio_output is None else o.audio_output,
        )

    def _genai(self, provider: ProviderConfig, model: str) -> Any:
        """(genai Provider, ModelInfo) or None; tries the base URL, then the kind, then the model name alone."""
        key = (provider.kind, provider.base_url, model)
        if key in self._lookups:
            return self._lookups[key]
        from genai_prices import data_snapshot  # imported on first use: it is the heaviest import we have

        snapshot = data_snapshot.get_snapshot()
        found = None
        for provider_id, url in ((None, provider.base_url), (price_list(provider), None), (None, None)):
            found = _find(snapshot, model, provider_id, url)
            if found is not None:
                break
        if len(self._lookups) >= _CACHE_LIMIT:
            self._lookups.clear()
            self._steady.clear()
            self._plain.clear()
        self._lookups[key] = found
        return found

    def rates(
        self, provider: ProviderConfig, model: str, at: datetime, context: tuple[tuple[str, str], ...] = ()
    ) -> Rates | None:
        """What picometer charges per 1M tokens for this model on this provider, or None if unknown."""
        if provider.free:
            return Rates(0.0, 0.0, 0.0, 0.0, "free")
        override = self._override(model)
        if override is not None:
            return override
        found = self._genai(provider, model)
        if found is None:
            return None
        gprovider, info = found
        rates = _rates_of(info.get_prices(at, dict(context)), f"genai-prices:{gprovider.id}/{info.id}")
        if audio_rates(info.id) is not DEAREST_AUDIO:  # an audio model: show the audio rates it is charged
            rates = _with_audio(rates, info.id)[0]
        return rates

    def variants(self, provider: ProviderConfig, model: str, at: datetime) -> list[tuple[dict[str, str], Rates]]:
        """The price data's variants of a model (service tiers, batch), as rates; none for config prices."""
        if provider.free or self._override(model) is not None:
            return []
        found = self._genai(provider, model)
        if found is None:
            return []
        out = []
        for v in found[1].price_variants or ():
            rates = self.rates(provider, model, at, tuple(v.when.items()))
            if rates is not None and any(p is not None for p in v.prices.__dict__.values()):
                out.append((dict(v.when), rates))
        return out

    def context_window(self, provider: ProviderConfig, model: str) -> int | None:
        """The most tokens the model takes in one call, when the price data knows it."""
        found = None if provider.free or self._override(model) else self._genai(provider, model)
        window = getattr(found[1], "context_window", None) if found else None
        return window if isinstance(window, int) and window > 0 else None

    def is_priced(self, provider: ProviderConfig, model: str, at: datetime) -> bool:
        return provider.free or self._override(model) is not None or self._genai(provider, model) is not None

    def cost(
        self,
        provider: ProviderConfig,
        models: Iterable[str | None],
        usage: Usage,
        at: datetime,
        *,
        shape: str = "openai",
        batch: bool = False,
        request_tools: Iterable[str] = (),
    ) -> Quote:
        """The price of one call. `models`: most specific first (response model, then request model)."""
        if provider.free:
            return Quote(0.0, "free")
        names = tuple(m for m in models if m)
        ctx = price_context(usage, batch)
        plain = usage.reported_cost_usd is None and not (
            usage.tool_calls or usage.audio_input_tokens or usage.audio_output_tokens
        )
        if plain:
            known = self._plain.get((provider.kind, provider.base_url, names, ctx))
            if known is not None:  # decided before for the same models: the arithmetic alone
                return Quote(cost_from_rates(known[0], usage), known[1])
        if usage.reported_cost_usd is not None and not any(self._override(m) for m in names):
            return Quote(usage.reported_cost_usd, "provider")  # its bill includes its tools' fees
        tools = tools_cost(shape, usage.tool_calls, names[0] if names else None, request_tools)
        for model in names:
            override = self._override(model)
            if override is not None:
                return Quote(round(cost_from_rates(override, usage) + tools, 12), "config", tools)
        for model in names:
            found = self._genai(provider, model)
            if found is not None:
                dollars, extra = self._genai_cost(found, usage, at, ctx)
                source = f"genai-prices:{found[0].id}/{found[1].id}{extra}"
                steady = self._steady.get((found[0].id, found[1].id, ctx))
                if plain and steady is not None and not steady.tiered:
                    if len(self._plain) >= _CACHE_LIMIT:  # response models are the provider's word: any number
                        self._plain.clear()
                    self._plain[(provider.kind, provider.base_url, names, ctx)] = (steady, source)
                return Quote(round(dollars + tools, 12), source, tools)
        return Quote(None, "unpriced")

    def worst_cost(
        self,
        provider: ProviderConfig,
        model: str,
        usage: Usage,
        at: datetime,
        *,
        shape: str = "openai",
        request_tools: Iterable[str] = (),
    ) -> float | None:
        """The most `usage` (a request's worst case) can cost: every input token at the dearest rate it may be
        billed at (plain, cache write, audio), every output token at the dearer of text and audio."""
        asked = tuple(request_tools)
        best: float | None = None
        for candidate in _worst_candidates(usage):
            c = self.cost(provider, (model,), candidate, at, shape=shape, request_tools=asked).cost_usd
            if c is None:
                return None
            best = c if best is None else max(best, c)
        return best

    def _genai_cost(self, found: Any, u: Usage, at: datetime, ctx: tuple[tuple[str, str], ...]) -> tuple[float, str]:
        """(dollars for the tokens, a note for the source when a rate came from our own table)."""
        gprovider, info = found
        key = (gprovider.id, info.id, ctx)
        rates = self._steady.get(key)
        if rates is None:
            rates = _rates_of(info.get_prices(at, dict(ctx)), "genai-prices")
            if not isinstance(info.prices, list):  # one price for all time: the same rates on every call
                if len(self._steady) >= _CACHE_LIMIT:  # the tier is the provider's word: any number of them
                    self._steady.clear()
                self._steady[key] = rates
        if not rates.tiered:
            # Flat prices: the same arithmetic genai-prices does, without its generic unit machinery (~0.5 ms).
            filled, note = _audio_filled(rates, info.id, u)
            return cost_from_rates(filled, u), note
        return _calc(info, u, at, ctx, rates)


def _worst_candidates(u: Usage) -> list[Usage]:
    inputs = [
        u,
        replace(u, cache_write_tokens=u.input_tokens, cache_write_1h_tokens=u.cache_write_1h_tokens and u.input_tokens),
    ]
    if u.audio_input_tokens:
        inputs.append(replace(u, audio_input_tokens=u.input_tokens))
    out = []
    for c in inputs:
        out.append(c)
        if u.audio_output_tokens:
            out.append(replace(c, audio_output_tokens=u.output_tokens))
    return out


def _find(snapshot: Any, model: str, provider_id: str | None, url: str | None) -> tuple[Any, Any] | None:
    """genai-prices' (Provider, ModelInfo) for a model, found without its lookup caches: they keep every model
    name ever asked about, and a client can send any number of names."""
    if provider_id is not None or url is not None:
        try:
            gprovider = snapshot.find_provider(None, provider_id, url)  # cached per provider: bounded
        except LookupError:
            return None
    else:
        ref = model.lower()
        gprovider = next(
            (p for p in snapshot.providers if p.model_match is not None and p.model_match.is_match(ref)), None
        )
        if gprovider is None:
            return None
    info = gprovider.find_model(model, all_providers=snapshot.providers)
    return None if info is None else (gprovider, _without_off_peak(info))


def _without_off_peak(info: Any) -> Any:
    """The model with its time-of-day prices replaced by the dearest of them, all day: the data keeps
    DeepSeek's off-peak discount, which DeepSeek ended on 2025-09-05, and the day price never bills less."""
    prices = info.prices
    if not isinstance(prices, list):
        return info
    from genai_prices.types import TimeOfDateConstraint

    timed = [p for p in prices if p.constraint is None or isinstance(p.constraint, TimeOfDateConstraint)]
    if len(timed) < 2 or not any(p.constraint is not None for p in timed):
        return info
    dearest = max(timed, key=lambda p: _decimal(p.prices.input_mtok)[0])
    dated = [p for p in prices if p not in timed]
    return dataclasses.replace(info, prices=[dataclasses.replace(dearest, constraint=None), *dated])


def cost_from_rates(r: Rates, u: Usage) -> float:
    """Config prices: audio at the audio rates, 1-hour writes at their own rate (both default to text rates)."""
    uncached = max(u.input_tokens - u.cached_input_tokens - u.cache_write_tokens - u.audio_input_tokens, 0)
    write_1h = min(u.cache_write_1h_tokens, u.cache_write_tokens)
    dollars = (
        uncached * r.input
        + u.cached_input_tokens * r.cached_input
        + (u.cache_write_tokens - write_1h) * r.cache_write
        + write_1h * (r.cache_write if r.cache_write_1h is None else r.cache_write_1h)
        + u.audio_input_tokens * (r.input if r.audio_input is None else r.audio_input)
        + (u.output_tokens - u.audio_output_tokens) * r.output
        + u.audio_output_tokens * (r.output if r.audio_output is None else r.audio_output)
    ) / 1_000_000
    return round(dollars, 12)


def _rates_of(price: Any, source: str) -> Rates:
    """A genai-prices ModelPrice as flat rates; tiered prices give their base tier and tiered=True."""
    inp, t1 = _decimal(price.input_mtok)
    out, t2 = _decimal(price.output_mtok)
    cached, t3 = _decimal(price.cache_read_mtok) if price.cache_read_mtok is not None else (inp, False)
    write, t4 = _decimal(price.cache_write_mtok) if price.cache_write_mtok is not None else (inp, False)
    write_1h = _decimal(price.cache_write_1h_mtok)[0] if price.cache_write_1h_mtok is not None else None
    audio_in = _decimal(price.input_audio_mtok)[0] if price.input_audio_mtok is not None else None
    audio_out = _decimal(price.output_audio_mtok)[0] if price.output_audio_mtok is not None else None
    return Rates(inp, out, cached, write, source, t1 or t2 or t3 or t4, write_1h, audio_in, audio_out)


def _audio_filled(rates: Rates, model_id: str, u: Usage) -> tuple[Rates, str]:
    """The rates for this usage: with audio in it, audio rates where the price data has none."""
    if not (u.audio_input_tokens or u.audio_output_tokens):
        return rates, ""
    return _with_audio(rates, model_id)


def _with_audio(rates: Rates, model_id: str) -> tuple[Rates, str]:
    """Audio rates from our table where the price data has none: audio is never priced as text."""
    if rates.audio_input is not None and rates.audio_output is not None:
        return rates, ""
    audio = audio_rates(model_id)
    filled = replace(
        rates,
        audio_input=audio.input if rates.audio_input is None else rates.audio_input,
        audio_output=audio.output if rates.audio_output is None else rates.audio_output,
    )
    return filled, "+audio:" + ("conservative" if audio is DEAREST_AUDIO else "picometer")


def _calc(info: Any, u: Usage, at: datetime, ctx: tuple[tuple[str, str], ...], rates: Rates) -> tuple[float, str]:
    """genai-prices' own arithmetic, for prices that rise above a context length."""
    from genai_prices import Usage as GenaiUsage

    price = info.get_prices(at, dict(ctx))
    filled, note = _audio_filled(rates, info.id, u)
    if note:
        price = copy(price)
        price.__dict__["input_audio_mtok"] = Decimal(str(filled.audio_input))
        price.__dict__["output_audio_mtok"] = Decimal(str(filled.audio_output))
    try:
        calc = price.calc_price(
            GenaiUsage(
                input_tokens=u.input_tokens,
                cache_read_tokens=u.cached_input_tokens,
                cache_write_tokens=u.cache_write_tokens,
                cache_write_1h_tokens=min(u.cache_write_1h_tokens, u.cache_write_tokens),
                input_audio_tokens=u.audio_input_tokens,
                output_tokens=u.output_tokens,
                output_audio_tokens=u.audio_output_tokens,
            )
        )
    except ValueError:
        # Its units cannot split this usage (cached audio on a tiered price): every token at the top tier.
        return cost_from_rates(_top_tier(price, filled), u), note + "+top-tier"
    return round(float(calc["total_price"]), 12), note


def _top_tier(price: Any, base: Rates) -> Rates:
    def top(value: Any, fallback: float) -> float:
        tiers = getattr(value, "tiers", None)
        return float(tiers[-1].price) if tiers else fallback

    return replace(
        base,
        input=top(price.input_mtok, base.input),
        output=top(price.output_mtok, base.output),
        cached_input=top(price.cache_read_mtok, base.cached_input),
        cache_write=top(price.cache_write_mtok, base.cache_write),
    )
