"""TOML config into frozen dataclasses. Every key has a default; every error names the key and the fix.

The one place to import config names from; the modules behind it, each with one job:
sections (the dataclasses), load (file and TOML into a Config), check (validation), secrets (env:, file:
and credential: references), reload (what waits for a restart), show (the effective config, masked),
errors (ConfigError).
"""

from __future__ import annotations

from picometer.config.check import NAME_RE, RESERVED_PROVIDER_NAMES
from picometer.config.errors import ConfigError
from picometer.config.load import DEFAULT_PATHS, config_from_dict, find_config_path, load_config
from picometer.config.reload import Reloadable, keep_for_restart, restart_needed
from picometer.config.secrets import (
    CREDENTIALS_FALLBACK_DIR,
    is_reference,
    resolve_secret,
    resolve_secrets,
    secret_refs,
    with_secrets,
)
from picometer.config.sections import (
    DEFAULT_BASE_URLS,
    AlertsConfig,
    BudgetConfig,
    CacheConfig,
    CanaryConfig,
    Config,
    DiscordConfig,
    ExportConfig,
    GotifyConfig,
    NotifyConfig,
    NtfyConfig,
    PriceConfig,
    ProbeConfig,
    ProviderConfig,
    RetryConfig,
    RuleConfig,
    Secret,
    ServerConfig,
    StorageConfig,
    TelegramConfig,
    WebhookConfig,
    WorkflowConfig,
    is_loopback,
    split_listen,
)
from picometer.config.show import mask_key, to_dict

__all__ = [
    "CREDENTIALS_FALLBACK_DIR",
    "DEFAULT_BASE_URLS",
    "DEFAULT_PATHS",
    "NAME_RE",
    "RESERVED_PROVIDER_NAMES",
    "AlertsConfig",
    "BudgetConfig",
    "CacheConfig",
    "CanaryConfig",
    "Config",
    "ConfigError",
    "DiscordConfig",
    "ExportConfig",
    "GotifyConfig",
    "NotifyConfig",
    "NtfyConfig",
    "PriceConfig",
    "ProbeConfig",
    "ProviderConfig",
    "Reloadable",
    "RetryConfig",
    "RuleConfig",
    "Secret",
    "ServerConfig",
    "StorageConfig",
    "TelegramConfig",
    "WebhookConfig",
    "WorkflowConfig",
    "config_from_dict",
    "find_config_path",
    "is_loopback",
    "is_reference",
    "keep_for_restart",
    "load_config",
    "mask_key",
    "resolve_secret",
    "resolve_secrets",
    "restart_needed",
    "secret_refs",
    "split_listen",
    "to_dict",
    "with_secrets",
]
