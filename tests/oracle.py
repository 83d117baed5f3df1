"""An independent price oracle for tests: genai-prices' own calc_price, not picometer's arithmetic."""

from __future__ import annotations

from genai_prices import Usage as GUsage
from genai_prices import calc_price


def independent_cost(model: str, provider: str, usage: dict[str, int]) -> float:
    calc = calc_price(
        GUsage(
            input_tokens=usage["input"],
            cache_read_tokens=usage.get("cached", 0),
            cache_write_tokens=usage.get("write", 0),
            output_tokens=usage["output"],
        ),
        model,
        provider_id=provider,
    )
    return float(calc.total_price)
