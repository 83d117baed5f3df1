"""picometer: meter, price and guard every LLM call on a small machine."""

__version__ = "0.1.0"
