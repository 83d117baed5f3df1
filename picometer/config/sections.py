"""The config's shape: one frozen dataclass per TOML section, every key with its default."""

from __future__ import annotations

import ipaddress
import types
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, repr=False)
class Secret:
    """A resolved secret; its repr never shows the value."""

    value: str

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


def split_listen(listen: str) -> tuple[str, int]:
    """A listen address, host:port (an IPv6 host in brackets), as (host, port). Raises ValueError."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(listen)
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServerConfig:
    listen: str = "127.0.0.1:8787"
    default_provider: str = "openai"
    max_body_bytes: int = 10_000_000
    admin_token: str = ""
    client_keys: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()  # web pages (scheme://host[:port]) that may call from a browser
    max_in_flight: int = 64  # requests being served at once; more get 503 overloaded with Retry-After
    max_body_bytes_in_flight: int = 32_000_000  # request bodies held at once, all calls together (memory bound)
    max_answer_bytes_in_flight: int = 16_000_000  # whole answers held at once; past it they are passed on as they come
    max_connections: int = 100  # open client connections; past it a new one replaces an idle one, else gets 503
    header_timeout_s: float = 10.0  # a connection that has not sent its request head by then is dropped
    cost_in_body: bool = False  # add usage.cost (USD) to OpenAI-shaped answers and the final stream chunk

    @property
    def host(self) -> str:
        return split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return split_listen(self.listen)[1]

    @property
    def url(self) -> str:
        """Where a client on this machine reaches the daemon; a wildcard listener is reached over loopback."""
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.port}"


@dataclass(frozen=True)
class StorageConfig:
    data_dir: str = "/var/lib/picometer"
    log_dir: str = "/var/log/picometer"
    log_max_bytes: int = 52_428_800
    log_rotate_bytes: int = 5_242_880
    log_retention_days: int = 90
    fsync_interval_s: float = 5.0
    min_free_mb: int = 200
    store_prompts: str = "hash"
    max_series: int = 5000  # distinct workflow x env x provider x model in the rollups; later ones: "other"


@dataclass(frozen=True)
class ProviderConfig:
    kind: str = "openai"
    base_url: str = "https://api.openai.com/v1"
    api_key: str = ""
    timeout_s: float = 120.0  # the longest silence once the answer has started (between stream chunks)
    connect_timeout_s: float = 10.0
    first_byte_timeout_s: float = 600.0  # a non-streaming reasoning model sends nothing until it is done
    total_timeout_s: float = 1800.0
    free: bool = False
    max_response_bytes: int = 50_000_000  # a metered answer larger than this (decompressed): 502 upstream_bad_response
    fallback: tuple[str, ...] = ()  # "provider/model" tried in order when this provider fails or its quota is gone


@dataclass(frozen=True)
class RetryConfig:
    max_attempts: int = 3
    base_delay_s: float = 0.5
    max_delay_s: float = 20.0
    budget_ratio: float = 0.2
    min_retries_per_minute: int = 20  # plus this floor, so a quiet provider's rare failure is still retried
    circuit_failures: int = 5  # failures in a row that open a provider's circuit (0: never)
    circuit_open_s: float = 30.0  # how long calls then fail fast before one trial call


@dataclass(frozen=True)
class BudgetConfig:
    timezone: str = "local"
    daily_usd: float = 0.0
    monthly_usd: float = 0.0
    max_tokens_per_request: int = 0
    over_cap: str = "clamp"
    alert_at: tuple[float, ...] = (0.5, 0.8, 1.0)
    on_exceed: str = "block"  # "block" | "alert" | "downgrade" (to downgrade_to while it fits, then block)
    downgrade_to: str = ""  # "provider/model" a call goes to once its own model would pass a cap
    unpriced: str = "block"
    unmetered: str = "block"  # a POST picometer cannot meter while a dollar cap applies: "block" (403) | "allow"


@dataclass(frozen=True)
class PriceConfig:
    """Operator prices per 1M tokens; cached_input and cache_write default to input."""

    input: float = 0.0
    output: float = 0.0
    cached_input: float | None = None
    cache_write: float | None = None
    cache_write_1h: float | None = None  # Anthropic's 1-hour cache writes; defaults to cache_write
    audio_input: float | None = None  # audio tokens; default to input and output
    audio_output: float | None = None


@dataclass(frozen=True)
class WorkflowConfig:
    # Caps are per workflow (0 = none); policies left unset inherit [budgets].
    daily_usd: float = 0.0
    monthly_usd: float = 0.0
    max_tokens_per_request: int = 0
    over_cap: str | None = None
    alert_at: tuple[float, ...] | None = None
    on_exceed: str | None = None
    downgrade_to: str | None = None
    unpriced: str | None = None
    unmetered: str | None = None
    keys: tuple[str, ...] = ()
    env: str = "prod"
    owner: str = ""
    slo_latency_s: float = 0.0
    slo_target: float = 0.99


@dataclass(frozen=True)
class ProbeConfig:
    name: str = ""
    provider: str = "openai"
    model: str = "gpt-4o-mini"
    prompt: str = "Reply with exactly: PONG"
    expect_regex: str = "PONG"
    expect_json_keys: tuple[str, ...] = ()  # the answer must be a JSON object with these keys
    max_latency_s: float = 15.0
    max_tokens: int = 8
    fail_after: int = 2


@dataclass(frozen=True)
class CanaryConfig:
    interval_s: float = 3600.0
    probes: tuple[ProbeConfig, ...] = ()


@dataclass(frozen=True)
class AlertsConfig:
    cooldown_s: float = 3600.0
    quiet_hours: str = ""
    spike_zscore: float = 3.0
    spike_min_usd: float = 0.50
    spike_min_pct: float = 50.0
    loop_calls: int = 25  # agent_loop: this many calls of one conversation, each longer, within loop_window_s
    loop_window_s: float = 600.0
    runaway_factor: float = 10.0  # spend or call rate over 10 minutes this many times the usual
    duplicate_storm: int = 20  # the same prompt this many times in 5 minutes
    error_rate_pct: float = 25.0  # a provider failing this share of calls over 10 minutes


@dataclass(frozen=True)
class RuleConfig:
    """One [[rules]] entry: regexes that must all match (empty: any), the tags it sets, or a block."""

    match_path: str = ""
    match_model: str = ""
    match_header: Mapping[str, str] = field(default_factory=lambda: types.MappingProxyType({}))
    match_prompt: str = ""
    workflow: str = ""
    env: str = ""
    tenant: str = ""
    prompt_version: str = ""
    action: str = "tag"


@dataclass(frozen=True)
class NtfyConfig:
    url: str = ""  # the topic's URL, e.g. "https://ntfy.sh/my-topic"
    token: str = ""
    min_severity: str = "info"


@dataclass(frozen=True)
class GotifyConfig:
    url: str = ""  # the server's base URL: picometer posts to {url}/message
    token: str = ""
    min_severity: str = "info"


@dataclass(frozen=True)
class DiscordConfig:
    webhook_url: str = ""
    min_severity: str = "info"


@dataclass(frozen=True)
class WebhookConfig:
    url: str = ""
    secret: str = ""  # X-Picometer-Signature: sha256=<hex HMAC-SHA256 of the body>
    min_severity: str = "info"


@dataclass(frozen=True)
class NotifyConfig:
    ntfy: NtfyConfig = field(default_factory=NtfyConfig)
    gotify: GotifyConfig = field(default_factory=GotifyConfig)
    discord: DiscordConfig = field(default_factory=DiscordConfig)
    webhook: WebhookConfig = field(default_factory=WebhookConfig)


@dataclass(frozen=True)
class TelegramConfig:
    enabled: bool = False
    bot_token: str = "credential:telegram_token"
    chat_ids: tuple[int, ...] = ()
    api_base: str = "https://api.telegram.org"
    commands: bool = True


@dataclass(frozen=True)
class CacheConfig:
    enabled: bool = False  # the exact-match response cache (picometer.cache)
    max_mb: int = 64  # on disk; least recently used answers go first
    ttl_s: float = 3600.0
    workflows: tuple[str, ...] = ()  # empty: every workflow


@dataclass(frozen=True)
class ExportConfig:
    dir: str = "/var/lib/picometer/exports"
    weekly: bool = True
    send_to_telegram: bool = True


# The base URL a provider of each kind gets when its table names none.
DEFAULT_BASE_URLS = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
    "gemini": "https://generativelanguage.googleapis.com",
    "ollama": "http://127.0.0.1:11434",
}
FREE_KINDS = frozenset({"ollama"})  # local models: tokens metered, cost 0 unless the table says free = false


def default_providers() -> Mapping[str, ProviderConfig]:
    # Zero-config: both providers pass the client's own key through.
    return types.MappingProxyType(
        {
            "openai": ProviderConfig(kind="openai", base_url="https://api.openai.com/v1"),
            "anthropic": ProviderConfig(kind="anthropic", base_url="https://api.anthropic.com"),
        }
    )


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    providers: Mapping[str, ProviderConfig] = field(default_factory=default_providers)
    retry: RetryConfig = field(default_factory=RetryConfig)
    budgets: BudgetConfig = field(default_factory=BudgetConfig)
    prices: Mapping[str, PriceConfig] = field(default_factory=lambda: types.MappingProxyType({}))
    workflows: Mapping[str, WorkflowConfig] = field(default_factory=lambda: types.MappingProxyType({}))
    canary: CanaryConfig = field(default_factory=CanaryConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    rules: tuple[RuleConfig, ...] = ()
    notify: NotifyConfig = field(default_factory=NotifyConfig)
    telegram: TelegramConfig = field(default_factory=TelegramConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    source: str = ""  # the file it came from, "" for built-in defaults
    secrets: Mapping[str, Secret] = field(default_factory=lambda: types.MappingProxyType({}), repr=False)

    def provider_key(self, provider: str) -> Secret | None:
        return self.secrets.get(f"providers.{provider}.api_key")
