"""`picometer prices MODEL`: what a model is charged, per tier, cache TTL and audio, with the per-use tool fees
and where every number comes from."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from picometer.config import ProviderConfig
from picometer.metering import fees
from picometer.metering.pricing import Rates, genai_prices_version

ROWS: tuple[tuple[str, Callable[[Rates], float | None]], ...] = (
    ("input", lambda r: r.input),
    ("cached input", lambda r: r.cached_input),
    ("cache write 5m", lambda r: r.cache_write),
    ("cache write 1h", lambda r: r.cache_write_1h),
    ("output", lambda r: r.output),
    ("audio input", lambda r: r.audio_input),
    ("audio output", lambda r: r.audio_output),
)
OPTIONAL = ("cache write 1h", "audio input", "audio output")  # shown only for models that have them


def price_lines(
    model: str,
    provider_name: str,
    provider: ProviderConfig,
    rates: Rates,
    variants: Iterable[tuple[dict[str, str], Rates]],
) -> list[str]:
    """A table: the standard rates, then each variant of the price data (priority, flex, batch) that differs."""
    source = rates.source
    if source.startswith("genai-prices:"):
        source += f" (bundled data, genai-prices {genai_prices_version()})"
    columns = [("standard", rates)] + [("/".join(when.values()), r) for when, r in variants if r != rates]
    lines = [
        f"{model} on {provider_name}, dollars per 1M tokens:",
        " " * 21 + "".join(f"{label:>12}" for label, _ in columns),
    ]
    for label, pick in ROWS:
        values = [pick(r) for _, r in columns]
        if label in OPTIONAL and all(v is None for v in values):
            continue
        lines.append(f"  {label:<19}" + "".join(f"{'-' if v is None else f'${v:,.4f}':>12}" for v in values))
    if rates.tiered:
        lines.append("  (base tier shown; long prompts cost more and are charged by the tiered price)")
    lines.append(f"source: {source}")
    if provider.kind == "gemini":
        lines.append("per-use fees: grounding with Google Search is billed by Google per prompt and not charged here")
    elif fees.is_search_model(model) and not provider.free:
        lines.append("every call searches the web, billed per call by web_search_options.search_context_size:")
        for size in ("low", "medium", "high"):
            fee = fees.chat_search_fee(model, size)
            lines.append(
                f"  {size + (' (default)' if size == 'medium' else ''):<19} ${fee.usd:,.4f} a call   {fee.source}"
            )
    elif not provider.free:
        lines.append("per-use fees (server-side tools, on top of their tokens):")
        for label, fee in tool_fees(provider.kind):
            lines.append(f"  {label:<19} ${fee.usd:,.4f} a call   {fee.source}")
    return lines


def tool_fees(kind: str) -> list[tuple[str, fees.Fee]]:
    if kind == "anthropic":
        return [("web search", fees.WEB_SEARCH)]
    return [
        ("web search", fees.OPENAI_WEB_SEARCH),
        ("web search preview", fees.OPENAI_WEB_SEARCH_PREVIEW),
        ("file search", fees.OPENAI_FILE_SEARCH),
    ]
