"""`picometer init`: a starter config for the chosen providers, checked before it is written."""

from __future__ import annotations

from typing import Any

from picometer.config.load import config_from_dict

PRESETS: dict[str, dict[str, Any]] = {
    "openai": {"kind": "openai", "base_url": "https://api.openai.com/v1", "api_key": "env:OPENAI_API_KEY"},
    "anthropic": {"kind": "anthropic", "base_url": "https://api.anthropic.com", "api_key": "env:ANTHROPIC_API_KEY"},
    "openrouter": {"kind": "openai", "base_url": "https://openrouter.ai/api/v1", "api_key": "env:OPENROUTER_API_KEY"},
    "ollama": {"kind": "openai", "base_url": "http://127.0.0.1:11434/v1", "api_key": "", "free": True},
}


def starter_text(
    listen: str, providers: tuple[str, ...], daily_usd: float, monthly_usd: float, data_dir: str, log_dir: str
) -> str:
    """The TOML of a starter config; ConfigError (naming the key) when the choices do not make a valid one."""
    import tomli_w

    data: dict[str, Any] = {
        "server": {"listen": listen, "default_provider": providers[0]},
        "storage": {"data_dir": data_dir, "log_dir": log_dir},
        "providers": {name: PRESETS[name] for name in providers},
        "budgets": {"daily_usd": daily_usd, "monthly_usd": monthly_usd},
    }
    config_from_dict(data)
    return (
        "# picometer config; every key not written here has its default (see config.example.toml).\n"
        + tomli_w.dumps(data)
    )
