"""The kinds of tokens a call is billed for, named once: the usage readers, the record, batch sums, the
rollups and /metrics all iterate over these names instead of spelling them out."""

from __future__ import annotations

# The Usage and Record field of each kind. Parts of others: cached, cache writes and audio input are in
# input_tokens; 1-hour writes in cache_write_tokens; reasoning and audio output in output_tokens.
TOKEN_FIELDS = (
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
    "reasoning_tokens",
    "audio_input_tokens",
    "audio_output_tokens",
)
# picometer_tokens_total's `type` label for each kind it counts (1-hour writes are inside cache_write there).
METRIC_TYPES = tuple((f.removesuffix("_tokens"), f) for f in TOKEN_FIELDS if f != "cache_write_1h_tokens")
# The kinds the rollups keep per hour (their columns; audio and 1-hour writes are in the usage log only).
ROLLUP_FIELDS = ("input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens")
