"""What one images or audio call is charged, and the words its source is given in. Pure.

Amounts are summed as exact fractions and turned into dollars once (`usd`), so a cost is never above its
reservation by a rounding error.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

PER_M = Fraction(1, 1_000_000)  # a "per 1M tokens" (or characters) price, as a price per unit

RESERVATION = "reservation"  # the answer does not say what was billed: charged its reservation
CONSERVATIVE = "conservative"  # the model is not in the tables: charged the dearest the tables allow
PRICED = "openai-pricing:"  # followed by the model; "(tokens)" when priced from the answer's usage


@dataclass(frozen=True, slots=True)
class MediaCharge:
    cost_usd: float
    source: str  # "openai-pricing:<model>", "openai-pricing:<model>(tokens)", "reservation" or "conservative"
    input_tokens: int = 0  # as billed, when the answer reports tokens (GPT Image usage, gpt-4o-*-transcribe)
    output_tokens: int = 0
    audio_input_tokens: int = 0  # the audio part of input_tokens
    audio_output_tokens: int = 0  # the audio part of output_tokens


def usd(amount: Fraction) -> float:
    """An exact amount as dollars: the one place a sum is rounded."""
    return float(amount)
