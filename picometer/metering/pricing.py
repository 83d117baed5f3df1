"""Dollars for tokens: operator prices first, then genai-prices' bundled data. Never a silent zero."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from picometer.config import PriceConfig, ProviderConfig
from picometer.metering.usage import Usage

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


@dataclass(frozen=True, slots=True)
class Quote:
    cost_usd: float | None  # None: no price known
    source: str


def genai_prices_version() -> str:
    from importlib.metadata import version

    return version("genai-prices")


def _decimal(value: Any) -> tuple[float, bool]:
    if value is None:
        return 0.0, False
    if isinstance(value, Decimal | int | float):
        return float(value), False
    return float(value.base), True  # TieredPrices: the base tier


class Pricer:
    def __init__(self, prices: Mapping[str, PriceConfig]) -> None:
        self._overrides = {name.lower(): p for name, p in prices.items()}
        self._lookups: dict[tuple[str, str, str], Any] = {}
        self._steady: dict[tuple[str, str], Rates] = {}  # rates of models whose price has no date or time conditions

    def _override(self, model: str) -> Rates | None:
        o = self._overrides.get(model.lower())
        if o is None:
            return None
        cached = o.input if o.cached_input is None else o.cached_input
        return Rates(o.input, o.output, cached, o.input if o.cache_write is None else o.cache_write, "config")

    def _genai(self, provider: ProviderConfig, model: str) -> Any:
        """(genai Provider, ModelInfo) or None; tries the base URL, then the kind, then the model name alone."""
        key = (provider.kind, provider.base_url, model)
        if key in self._lookups:
            return self._lookups[key]
        from genai_prices import data_snapshot  # imported on first use: it is the heaviest import we have

        snapshot = data_snapshot.get_snapshot()
        found = None
        for provider_id, url in ((None, provider.base_url), (provider.kind, None), (None, None)):
            found = _find(snapshot, model, provider_id, url)
            if found is not None:
                break
        if len(self._lookups) >= _CACHE_LIMIT:
            self._lookups.clear()
            self._steady.clear()
        self._lookups[key] = found
        return found

    def rates(self, provider: ProviderConfig, model: str, at: datetime) -> Rates | None:
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
        return _rates_of(info.get_prices(at), f"genai-prices:{gprovider.id}/{info.id}")

    def is_priced(self, provider: ProviderConfig, model: str, at: datetime) -> bool:
        return provider.free or self._override(model) is not None or self._genai(provider, model) is not None

    def cost(self, provider: ProviderConfig, models: Iterable[str | None], usage: Usage, at: datetime) -> Quote:
        """The price of one call. `models`: most specific first (response model, then request model)."""
        if provider.free:
            return Quote(0.0, "free")
        names = [m for m in models if m]
        for model in names:
            override = self._override(model)
            if override is not None:
                return Quote(cost_from_rates(override, usage), "config")
        if usage.reported_cost_usd is not None:
            return Quote(usage.reported_cost_usd, "provider")
        for model in names:
            found = self._genai(provider, model)
            if found is not None:
                return Quote(self._genai_cost(found, usage, at), f"genai-prices:{found[0].id}/{found[1].id}")
        return Quote(None, "unpriced")

    def worst_cost(self, provider: ProviderConfig, model: str, usage: Usage, at: datetime) -> float | None:
        """The most `usage` can cost: every input token at the dearer of the input and cache-write rates."""
        plain = self.cost(provider, (model,), usage, at).cost_usd
        if plain is None:
            return None
        written = self.cost(provider, (model,), replace(usage, cache_write_tokens=usage.input_tokens), at).cost_usd
        return max(plain, written or 0.0)

    def _genai_cost(self, found: Any, u: Usage, at: datetime) -> float:
        gprovider, info = found
        rates = self._steady.get((gprovider.id, info.id))
        if rates is None:
            rates = _rates_of(info.get_prices(at), "genai-prices")
            if not isinstance(info.prices, list):  # one price for all time: the same rates on every call
                self._steady[(gprovider.id, info.id)] = rates
        return _cost_with(rates, found, u, at)


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
    return None if info is None else (gprovider, info)


def cost_from_rates(r: Rates, u: Usage) -> float:
    uncached = max(u.input_tokens - u.cached_input_tokens - u.cache_write_tokens, 0)
    dollars = (
        uncached * r.input
        + u.cached_input_tokens * r.cached_input
        + u.cache_write_tokens * r.cache_write
        + u.output_tokens * r.output
    ) / 1_000_000
    return round(dollars, 12)


def _rates_of(price: Any, source: str) -> Rates:
    """A genai-prices ModelPrice as flat rates; tiered prices give their base tier and tiered=True."""
    inp, t1 = _decimal(price.input_mtok)
    out, t2 = _decimal(price.output_mtok)
    cached, t3 = _decimal(price.cache_read_mtok) if price.cache_read_mtok is not None else (inp, False)
    write, t4 = _decimal(price.cache_write_mtok) if price.cache_write_mtok is not None else (inp, False)
    return Rates(inp, out, cached, write, source, t1 or t2 or t3 or t4)


def _cost_with(rates: Rates, found: Any, u: Usage, at: datetime) -> float:
    gprovider, info = found
    if not rates.tiered:
        # Flat prices: the same arithmetic genai-prices does, without its generic unit machinery (~0.5 ms).
        return cost_from_rates(rates, u)
    from genai_prices import Usage as GenaiUsage

    calc = info.calc_price(
        GenaiUsage(
            input_tokens=u.input_tokens,
            cache_read_tokens=u.cached_input_tokens,
            cache_write_tokens=u.cache_write_tokens,
            output_tokens=u.output_tokens,
        ),
        gprovider,
        genai_request_timestamp=at,
    )
    return round(float(calc.total_price), 12)
