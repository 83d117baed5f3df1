"""TOML config into frozen dataclasses. Every key has a default; every error names the key and the fix."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
import types
import typing
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_PATHS = (Path("/etc/picometer/config.toml"), Path("config.toml"))
CREDENTIALS_FALLBACK_DIR = Path("/etc/picometer/credentials")
RESERVED_PROVIDER_NAMES = frozenset({"v1", "w", "-", "metrics"})
NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class ConfigError(Exception):
    """A config problem, phrased as key, what is wrong, and how to fix it."""

    def __init__(self, key: str, problem: str, fix: str) -> None:
        self.key, self.problem, self.fix = key, problem, fix
        super().__init__(f"{key}: {problem}. Fix: {fix}")


@dataclass(frozen=True, repr=False)
class Secret:
    """A resolved secret; its repr never shows the value."""

    value: str

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


@dataclass(frozen=True)
class ServerConfig:
    listen: str = "127.0.0.1:8787"
    default_provider: str = "openai"
    max_body_bytes: int = 10_000_000
    admin_token: str = ""
    client_keys: tuple[str, ...] = ()
    max_in_flight: int = 64  # requests being served at once; more get 503 overloaded with Retry-After
    max_body_bytes_in_flight: int = 32_000_000  # request bodies held at once, all calls together (memory bound)
    max_answer_bytes_in_flight: int = 16_000_000  # whole answers held at once; past it they are passed on as they come
    max_connections: int = 100  # open client connections; past it a new one replaces an idle one, else gets 503
    header_timeout_s: float = 10.0  # a connection that has not sent its request head by then is dropped

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
    on_exceed: str = "block"
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
    runaway_factor: float = 10.0  # spend or call rate over 10 minutes this many times the usual
    duplicate_storm: int = 20  # the same prompt this many times in 5 minutes
    error_rate_pct: float = 25.0  # a provider failing this share of calls over 10 minutes


@dataclass(frozen=True)
class TelegramConfig:
    enabled: bool = False
    bot_token: str = "credential:telegram_token"
    chat_ids: tuple[int, ...] = ()
    api_base: str = "https://api.telegram.org"
    commands: bool = True


@dataclass(frozen=True)
class ExportConfig:
    dir: str = "/var/lib/picometer/exports"
    weekly: bool = True
    send_to_telegram: bool = True


def _default_providers() -> Mapping[str, ProviderConfig]:
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
    providers: Mapping[str, ProviderConfig] = field(default_factory=_default_providers)
    retry: RetryConfig = field(default_factory=RetryConfig)
    budgets: BudgetConfig = field(default_factory=BudgetConfig)
    prices: Mapping[str, PriceConfig] = field(default_factory=lambda: types.MappingProxyType({}))
    workflows: Mapping[str, WorkflowConfig] = field(default_factory=lambda: types.MappingProxyType({}))
    canary: CanaryConfig = field(default_factory=CanaryConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    telegram: TelegramConfig = field(default_factory=TelegramConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    source: str = ""  # the file it came from, "" for built-in defaults
    secrets: Mapping[str, Secret] = field(default_factory=lambda: types.MappingProxyType({}), repr=False)

    def provider_key(self, provider: str) -> Secret | None:
        return self.secrets.get(f"providers.{provider}.api_key")


# ---------------------------------------------------------------- loading


def find_config_path(explicit: str | None, env: Mapping[str, str]) -> Path | None:
    """--config, else $PICOMETER_CONFIG, else /etc/picometer/config.toml, else ./config.toml."""
    if explicit:
        return Path(explicit)
    if env.get("PICOMETER_CONFIG"):
        return Path(env["PICOMETER_CONFIG"])
    for candidate in DEFAULT_PATHS:
        if candidate.is_file():
            return candidate
    return None


def load_config(path: Path | None, env: Mapping[str, str] | None = None, *, resolve: bool = True) -> Config:
    """Read, validate and (by default) resolve secrets. Raises ConfigError."""
    env = os.environ if env is None else env
    if path is None:
        raw: dict[str, Any] = {}
    else:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError("--config", f"file {path} does not exist", "give the path of an existing file") from None
        except UnicodeDecodeError:
            raise ConfigError(str(path), "the file is not UTF-8 text", "save it as UTF-8") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(str(path), f"not valid TOML ({e})", "correct the syntax at that line") from None
    config = config_from_dict(raw, source=str(path) if path else "")
    return with_secrets(config, env) if resolve else config


def with_secrets(config: Config, env: Mapping[str, str]) -> Config:
    return dataclasses.replace(config, secrets=types.MappingProxyType(resolve_secrets(config, env)))


def config_from_dict(raw: Mapping[str, Any], source: str = "") -> Config:
    sections: dict[str, Any] = {}
    known = {f.name for f in dataclasses.fields(Config)} - {"source", "secrets"}
    for key in raw:
        if key not in known:
            raise ConfigError(f"[{key}]", "unknown section", f"remove it; known sections: {', '.join(sorted(known))}")
    for name, cls in (
        ("server", ServerConfig),
        ("storage", StorageConfig),
        ("retry", RetryConfig),
        ("budgets", BudgetConfig),
        ("alerts", AlertsConfig),
        ("telegram", TelegramConfig),
        ("export", ExportConfig),
    ):
        sections[name] = _build(cls, _table(raw, name, f"[{name}]"), f"[{name}]")
    if "providers" in raw:
        providers = {
            name: _build(ProviderConfig, _table(raw["providers"], name, f"[providers.{name}]"), f"[providers.{name}]")
            for name in _table(raw, "providers", "[providers]")
        }
    else:
        providers = dict(_default_providers())
    sections["providers"] = types.MappingProxyType(providers)
    sections["prices"] = types.MappingProxyType(
        {
            name: _build(PriceConfig, _table(raw["prices"], name, f'[prices."{name}"]'), f'[prices."{name}"]')
            for name in _table(raw, "prices", "[prices]")
        }
    )
    sections["workflows"] = types.MappingProxyType(
        {
            name: _build(WorkflowConfig, _table(raw["workflows"], name, f"[workflows.{name}]"), f"[workflows.{name}]")
            for name in _table(raw, "workflows", "[workflows]")
        }
    )
    canary_raw = dict(_table(raw, "canary", "[canary]"))
    probes_raw = canary_raw.pop("probes", [])
    if not isinstance(probes_raw, list):
        raise ConfigError("[[canary.probes]]", "must be an array of tables", "write each probe as [[canary.probes]]")
    probes = tuple(
        _build(ProbeConfig, _as_table(p, f"[[canary.probes]] #{i + 1}"), f"[[canary.probes]] #{i + 1}")
        for i, p in enumerate(probes_raw)
    )
    canary = _build(CanaryConfig, canary_raw, "[canary]", skip={"probes"})
    sections["canary"] = dataclasses.replace(canary, probes=probes)
    config = Config(**sections, source=source)
    _validate(config)
    return config


def _table(raw: Mapping[str, Any], name: str, where: str) -> Mapping[str, Any]:
    return _as_table(raw.get(name, {}), where)


def _as_table(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(where, f"must be a table, got {type(value).__name__}", f"write it as {where} with keys below")
    return value


_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def _build(cls: type[Any], raw: Mapping[str, Any], where: str, skip: frozenset[str] | set[str] = frozenset()) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.name not in skip]
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in names:
            raise ConfigError(f"{where}.{key}", "unknown key", f"remove it; known keys here: {', '.join(names)}")
        values[key] = _coerce(value, hints[key], f"{where}.{key}")
    return cls(**values)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):  # "X | None": None means "inherit", never written in TOML
        return _coerce(value, next(a for a in args if a is not type(None)), key)
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(key, f"must be a list, got {_shown(key, value)}", f"write it as [{_example(args[0])}]")
        return tuple(_coerce(v, args[0], key) for v in value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    # bool is a subclass of int in Python, but `true` is never a valid number here.
    if not isinstance(value, hint) or (isinstance(value, bool) and hint is not bool):
        raise ConfigError(
            key, f"must be {_TYPE_NAMES.get(hint, hint)}, got {_shown(key, value)}", f"write e.g. {_example(hint)}"
        )
    return value


def _example(hint: Any) -> str:
    return {str: '"text"', int: "10", float: "1.5", bool: "true"}.get(hint, "a value")


# ---------------------------------------------------------------- validation


def split_listen(listen: str) -> tuple[str, int]:
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


def _one_of(value: str | None, choices: tuple[str, ...], key: str) -> None:
    if value is not None and value not in choices:
        raise ConfigError(
            key, f"{_shown(key, value)} is not allowed", "use one of " + ", ".join(f'"{c}"' for c in choices)
        )


def _at_least(value: float, low: float, key: str) -> None:
    if value < low:
        raise ConfigError(key, f"{value} is below {low}", f"use a value of at least {low}")


def _validate(c: Config) -> None:
    try:
        host, port = split_listen(c.server.listen)
    except ValueError:
        raise ConfigError(
            "[server].listen", f"{c.server.listen!r} is not host:port", 'write e.g. "127.0.0.1:8787"'
        ) from None
    if not 0 <= port <= 65535:
        raise ConfigError("[server].listen", f"port {port} is out of range", "use a port from 1 to 65535")
    any_workflow_keys = any(w.keys for w in c.workflows.values())
    if not is_loopback(host) and not (c.server.client_keys or any_workflow_keys):
        raise ConfigError(
            "[server].listen",
            f"{host} is reachable from other machines but no client keys are configured",
            'listen on "127.0.0.1:8787", or set [server].client_keys or [workflows.NAME].keys',
        )
    if c.server.default_provider not in c.providers:
        raise ConfigError(
            "[server].default_provider",
            f"{c.server.default_provider!r} is not a configured provider",
            f"use one of {', '.join(sorted(c.providers)) or '(none: add a [providers.NAME] table)'}",
        )
    _at_least(c.server.max_body_bytes, 1024, "[server].max_body_bytes")
    _at_least(c.server.max_in_flight, 1, "[server].max_in_flight")
    _at_least(c.server.max_body_bytes_in_flight, c.server.max_body_bytes, "[server].max_body_bytes_in_flight")
    _at_least(c.server.max_answer_bytes_in_flight, 1_000_000, "[server].max_answer_bytes_in_flight")
    _at_least(c.server.max_connections, 2, "[server].max_connections")
    _at_least(c.server.header_timeout_s, 0.1, "[server].header_timeout_s")
    _at_least(c.storage.max_series, 100, "[storage].max_series")
    for i, key in enumerate(c.server.client_keys):
        _check_client_key(key, f"[server].client_keys[{i}]")

    s = c.storage
    _at_least(s.log_rotate_bytes, 4096, "[storage].log_rotate_bytes")
    # Room for the current file, one file being gzipped and its output, and at least one archive.
    if s.log_max_bytes < 4 * s.log_rotate_bytes:
        raise ConfigError(
            "[storage].log_max_bytes",
            f"{s.log_max_bytes} is less than 4 x log_rotate_bytes ({s.log_rotate_bytes})",
            "make log_max_bytes at least 4 x log_rotate_bytes (10x is a good ratio), or rotate smaller files",
        )
    _at_least(s.log_retention_days, 1, "[storage].log_retention_days")
    _at_least(s.fsync_interval_s, 0, "[storage].fsync_interval_s")
    _at_least(s.min_free_mb, 0, "[storage].min_free_mb")
    _one_of(s.store_prompts, ("none", "hash", "redacted"), "[storage].store_prompts")

    for name, p in c.providers.items():
        where = f"[providers.{name}]"
        if not NAME_RE.match(name) or name in RESERVED_PROVIDER_NAMES:
            raise ConfigError(where, "the name is not usable as a path segment", "use letters, digits, - _ . only")
        _one_of(p.kind, ("openai", "anthropic"), f"{where}.kind")
        if not re.match(r"^https?://[^/\s]+", p.base_url):
            raise ConfigError(
                f"{where}.base_url",
                f"{p.base_url!r} is not an http(s) URL",
                'write e.g. "https://api.openai.com/v1"',
            )
        for key, example in (
            ("timeout_s", 120),
            ("connect_timeout_s", 10),
            ("first_byte_timeout_s", 600),
            ("total_timeout_s", 1800),
        ):
            if getattr(p, key) <= 0:
                raise ConfigError(f"{where}.{key}", "must be positive", f"use e.g. {example}")
        _at_least(p.max_response_bytes, 65_536, f"{where}.max_response_bytes")

    r = c.retry
    _at_least(r.max_attempts, 1, "[retry].max_attempts")
    _at_least(r.base_delay_s, 0, "[retry].base_delay_s")
    _at_least(r.max_delay_s, r.base_delay_s, "[retry].max_delay_s")
    _at_least(r.budget_ratio, 0, "[retry].budget_ratio")
    _at_least(r.min_retries_per_minute, 0, "[retry].min_retries_per_minute")
    _at_least(r.circuit_failures, 0, "[retry].circuit_failures")
    _at_least(r.circuit_open_s, 0, "[retry].circuit_open_s")

    _validate_budget(c.budgets, "[budgets]")
    if c.budgets.timezone != "local":
        try:
            zoneinfo.ZoneInfo(c.budgets.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                "[budgets].timezone",
                f"{c.budgets.timezone!r} is not a known time zone",
                'use an IANA name like "Europe/Berlin", or "local"',
            ) from None

    for model, price in c.prices.items():
        where = f'[prices."{model}"]'
        for key in ("input", "output", "cached_input", "cache_write", "cache_write_1h", "audio_input", "audio_output"):
            value = getattr(price, key)
            if value is not None and value < 0:
                raise ConfigError(
                    f"{where}.{key}", "a price cannot be negative", "use dollars per 1M tokens, e.g. 0.15"
                )

    seen_keys: dict[str, str] = {}
    for name, w in c.workflows.items():
        where = f"[workflows.{name}]"
        _validate_budget(w, where)
        _at_least(w.slo_latency_s, 0, f"{where}.slo_latency_s")
        if not 0 < w.slo_target < 1:
            raise ConfigError(f"{where}.slo_target", f"{w.slo_target} is not between 0 and 1", "use e.g. 0.99")
        for i, key in enumerate(w.keys):
            _check_client_key(key, f"{where}.keys[{i}]")
            if key in seen_keys:
                raise ConfigError(
                    f"{where}.keys[{i}]",
                    f"the same key is also used by {seen_keys[key]}",
                    "give each workflow its own keys",
                )
            seen_keys[key] = where

    _at_least(c.canary.interval_s, 60, "[canary].interval_s")
    names: set[str] = set()
    for i, probe in enumerate(c.canary.probes):
        where = f"[[canary.probes]] #{i + 1}"
        if not probe.name or probe.name in names:
            raise ConfigError(f"{where}.name", "every probe needs a unique name", 'set name = "openai-mini"')
        names.add(probe.name)
        if probe.provider not in c.providers:
            raise ConfigError(
                f"{where}.provider",
                f"{probe.provider!r} is not a configured provider",
                "name a [providers.NAME] table",
            )
        try:
            re.compile(probe.expect_regex)
        except re.error as e:
            raise ConfigError(
                f"{where}.expect_regex", f"not a valid regular expression ({e})", "fix the pattern"
            ) from None
        _at_least(probe.fail_after, 1, f"{where}.fail_after")
        _at_least(probe.max_latency_s, 0.1, f"{where}.max_latency_s")
        _at_least(probe.max_tokens, 1, f"{where}.max_tokens")

    _at_least(c.alerts.cooldown_s, 0, "[alerts].cooldown_s")
    _at_least(c.alerts.spike_zscore, 0, "[alerts].spike_zscore")
    _at_least(c.alerts.spike_min_usd, 0, "[alerts].spike_min_usd")
    _at_least(c.alerts.spike_min_pct, 0, "[alerts].spike_min_pct")
    _at_least(c.alerts.runaway_factor, 1, "[alerts].runaway_factor")
    _at_least(c.alerts.duplicate_storm, 2, "[alerts].duplicate_storm")
    _at_least(c.alerts.error_rate_pct, 1, "[alerts].error_rate_pct")
    if c.alerts.quiet_hours and not re.fullmatch(
        r"([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d", c.alerts.quiet_hours
    ):
        raise ConfigError(
            "[alerts].quiet_hours", f"{c.alerts.quiet_hours!r} is not HH:MM-HH:MM", 'write e.g. "23:00-07:00"'
        )
    if c.telegram.enabled and not c.telegram.chat_ids:
        raise ConfigError(
            "[telegram].chat_ids",
            "Telegram is enabled but no chat may receive alerts",
            "add your chat id, e.g. chat_ids = [123456789]",
        )


def _validate_budget(b: BudgetConfig | WorkflowConfig, where: str) -> None:
    _at_least(b.daily_usd, 0, f"{where}.daily_usd")
    _at_least(b.monthly_usd, 0, f"{where}.monthly_usd")
    _at_least(b.max_tokens_per_request, 0, f"{where}.max_tokens_per_request")
    _one_of(b.over_cap, ("clamp", "reject"), f"{where}.over_cap")
    _one_of(b.on_exceed, ("block", "alert"), f"{where}.on_exceed")
    _one_of(b.unpriced, ("block", "allow"), f"{where}.unpriced")
    _one_of(b.unmetered, ("block", "allow"), f"{where}.unmetered")
    for step in b.alert_at or ():
        if not 0 < step <= 10:
            raise ConfigError(
                f"{where}.alert_at",
                f"{step} is not a fraction of the cap",
                "use fractions like [0.5, 0.8, 1.0]",
            )


def _check_client_key(key: str, where: str) -> None:
    if key.startswith("sha256:"):
        if not re.fullmatch(r"sha256:[0-9a-f]{64}", key):
            raise ConfigError(
                where,
                "not a sha256:<64 hex digits> digest",
                "write sha256: followed by the lowercase hex digest",
            )
    elif not key.startswith("pm-") or len(key) < 16:
        raise ConfigError(
            where,
            "a client key must start with pm- and be at least 16 characters",
            'use e.g. "pm-" + a random string, or "sha256:<hex>"',
        )


def restart_needed(old: Config, new: Config) -> list[str]:
    """Keys that changed but take effect only at the next start: the listener, storage, the budget calendar,
    and the Telegram bot (its connection is made once)."""
    keys = []
    if old.server.listen != new.server.listen:
        keys.append("server.listen")
    keys += _changed("storage", old.storage, new.storage)
    if old.budgets.timezone != new.budgets.timezone:
        keys.append("budgets.timezone")
    return keys + _changed("telegram", old.telegram, new.telegram)


def _changed(section: str, old: Any, new: Any) -> list[str]:
    """The dotted keys of a section whose values differ."""
    return [f"{section}.{f.name}" for f in dataclasses.fields(old) if getattr(old, f.name) != getattr(new, f.name)]


def keep_for_restart(old: Config, new: Config) -> Config:
    """`new` with what a running daemon cannot change (see restart_needed) kept as it was. Raises ConfigError."""
    kept = dataclasses.replace(
        new,
        server=dataclasses.replace(new.server, listen=old.server.listen),
        storage=old.storage,
        budgets=dataclasses.replace(new.budgets, timezone=old.budgets.timezone),
        telegram=old.telegram,
        secrets=types.MappingProxyType(
            {k: v for k, v in new.secrets.items() if k != "telegram.bot_token"}
            | {k: v for k, v in old.secrets.items() if k == "telegram.bot_token"}
        ),
    )
    _validate(kept)  # e.g. client keys dropped while the running listener is still on the network
    return kept


# ---------------------------------------------------------------- secrets


def secret_refs(c: Config) -> dict[str, str]:
    """Every secret reference that the config needs resolved, by dotted key."""
    refs = {f"providers.{name}.api_key": p.api_key for name, p in c.providers.items() if p.api_key}
    if c.telegram.enabled:
        refs["telegram.bot_token"] = c.telegram.bot_token
    if c.server.admin_token:
        refs["server.admin_token"] = c.server.admin_token
    return refs


def is_reference(ref: str) -> bool:
    return ref.startswith(("env:", "file:", "credential:"))


def resolve_secrets(c: Config, env: Mapping[str, str]) -> dict[str, Secret]:
    return {key: resolve_secret(ref, key, env) for key, ref in secret_refs(c).items()}


def resolve_secret(ref: str, key: str, env: Mapping[str, str]) -> Secret:
    if ref.startswith("env:"):
        var = ref[4:]
        if not env.get(var):
            raise ConfigError(
                key, f"environment variable {var} is not set", f"export {var}=... or use file:/credential:"
            )
        return Secret(env[var])
    if ref.startswith("file:"):
        return Secret(_read_secret_file(Path(ref[5:]), key))
    if ref.startswith("credential:"):
        name = ref[len("credential:") :]
        if env.get("CREDENTIALS_DIRECTORY"):
            # Under systemd the file read is systemd's copy; the fix is in the file it was loaded from.
            try:
                return Secret(_read_secret_file(Path(env["CREDENTIALS_DIRECTORY"]) / name, key))
            except ConfigError as e:
                source = CREDENTIALS_FALLBACK_DIR / name
                fix = f"put the secret in {source} (mode 0600), then: sudo systemctl restart picometer"
                raise ConfigError(key, e.problem, fix) from None
        base = env.get("PICOMETER_CREDENTIALS_DIR") or str(CREDENTIALS_FALLBACK_DIR)
        return Secret(_read_secret_file(Path(base) / name, key))
    return Secret(ref)  # a literal; `picometer check` warns about it


def _read_secret_file(path: Path, key: str) -> str:
    try:
        value = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ConfigError(key, f"secret file {path} does not exist", "create it (mode 0600) or fix the path") from None
    except PermissionError:
        raise ConfigError(
            key, f"secret file {path} is not readable", "run as the service user, or fix its owner"
        ) from None
    if not value:
        raise ConfigError(key, f"secret file {path} is empty", "put the secret in it")
    return value


# ---------------------------------------------------------------- output

_SECRET_NAMES = re.compile(r"(api_key|admin_token|bot_token|token|secret|keys|client_keys|webhook_url)(\[\d+\])?$")


def _shown(key: str, value: Any) -> str:
    """A config value for an error message; one under a secret's key is never echoed."""
    if _SECRET_NAMES.search(key):
        return f"a value of type {type(value).__name__} (not shown: this key holds a secret)"
    return repr(value)


def mask_key(key: str) -> str:
    """A client key as `check` shows it: enough to tell keys apart, never enough to use one."""
    if key.startswith("sha256:"):
        return key  # a digest is no secret
    return f"{key[:3]}***{key[-4:]} ({len(key)} characters)"


def to_dict(c: Config, *, mask: bool = True) -> dict[str, Any]:
    """The effective config as plain TOML-able data; literal secrets masked."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(c):
        if f.name in ("source", "secrets"):
            continue
        value = getattr(c, f.name)
        if isinstance(value, Mapping):
            out[f.name] = {k: _plain(v) for k, v in value.items()}
        else:
            out[f.name] = _plain(value)
    if mask:
        out["server"]["client_keys"] = [mask_key(k) for k in c.server.client_keys]
        for name, w in c.workflows.items():
            out["workflows"][name]["keys"] = [mask_key(k) for k in w.keys]
        for key, ref in secret_refs(c).items():
            if not is_reference(ref):
                section, *rest = key.split(".")
                target = out[section]
                for part in rest[:-1]:
                    target = target[part]
                target[rest[-1]] = "***masked***"
    return out


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj) if getattr(obj, f.name) is not None
        }
    if isinstance(obj, tuple):
        return [_plain(v) for v in obj]
    return obj
