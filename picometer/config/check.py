"""Validation of a built Config, section by section; each ConfigError names the key and the fix."""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Mapping

from picometer.config.errors import ConfigError, shown
from picometer.config.secrets import is_reference
from picometer.config.sections import (
    DEFAULT_BASE_URLS,
    BudgetConfig,
    Config,
    WorkflowConfig,
    is_loopback,
    split_listen,
)

RESERVED_PROVIDER_NAMES = frozenset({"v1", "w", "-", "metrics"})
NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
ORIGIN_RE = re.compile(r"^[a-z][a-z0-9+.-]*://([a-z0-9._-]+|\[[0-9a-f:.]+\])(:\d{1,5})?/?$", re.IGNORECASE)
_QUIET_HOURS_RE = re.compile(r"([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d")
_TIMEOUT_EXAMPLES = {"timeout_s": 120, "connect_timeout_s": 10, "first_byte_timeout_s": 600, "total_timeout_s": 1800}
_PRICE_KEYS = ("input", "output", "cached_input", "cache_write", "cache_write_1h", "audio_input", "audio_output")


def validate(c: Config) -> None:
    """Raises ConfigError for the first problem found."""
    _check_server(c)
    _check_storage(c)
    _check_providers(c)
    _check_retry(c)
    _check_budgets(c)
    _check_prices(c)
    _check_workflows(c)
    _check_canary(c)
    _check_alerts(c)
    _check_rules(c)
    _check_notify(c)
    _check_telegram(c)
    _check_cache(c)


def _one_of(value: str | None, choices: tuple[str, ...], key: str) -> None:
    if value is not None and value not in choices:
        raise ConfigError(
            key, f"{shown(key, value)} is not allowed", "use one of " + ", ".join(f'"{c}"' for c in choices)
        )


def _at_least(value: float, low: float, key: str) -> None:
    if value < low:
        raise ConfigError(key, f"{value} is below {low}", f"use a value of at least {low}")


def _floors(section: object, where: str, floors: Mapping[str, float]) -> None:
    """_at_least for several keys of one section, in order: {key: its lowest allowed value}."""
    for key, low in floors.items():
        _at_least(getattr(section, key), low, f"{where}.{key}")


def _check_server(c: Config) -> None:
    s = c.server
    try:
        host, port = split_listen(s.listen)
    except ValueError:
        raise ConfigError("[server].listen", f"{s.listen!r} is not host:port", 'write e.g. "127.0.0.1:8787"') from None
    if not 0 <= port <= 65535:
        raise ConfigError("[server].listen", f"port {port} is out of range", "use a port from 1 to 65535")
    any_workflow_keys = any(w.keys for w in c.workflows.values())
    if not is_loopback(host) and not (s.client_keys or any_workflow_keys):
        raise ConfigError(
            "[server].listen",
            f"{host} is reachable from other machines but no client keys are configured",
            'listen on "127.0.0.1:8787", or set [server].client_keys or [workflows.NAME].keys',
        )
    if s.default_provider not in c.providers:
        raise ConfigError(
            "[server].default_provider",
            f"{s.default_provider!r} is not a configured provider",
            f"use one of {', '.join(sorted(c.providers)) or '(none: add a [providers.NAME] table)'}",
        )
    _floors(
        s,
        "[server]",
        {
            "max_body_bytes": 1024,
            "max_in_flight": 1,
            "max_body_bytes_in_flight": s.max_body_bytes,
            "max_answer_bytes_in_flight": 1_000_000,
            "max_connections": 2,
            "header_timeout_s": 0.1,
        },
    )
    for i, key in enumerate(s.client_keys):
        _check_client_key(key, f"[server].client_keys[{i}]")
    for i, origin in enumerate(s.allowed_origins):
        if not ORIGIN_RE.match(origin):
            raise ConfigError(
                f"[server].allowed_origins[{i}]",
                f"{origin!r} is not a web origin",
                'write scheme, host and port only, as a browser sends it: "https://chat.example.org" '
                '(or "chrome-extension://ID" for an extension)',
            )


def _check_storage(c: Config) -> None:
    s = c.storage
    _floors(s, "[storage]", {"max_series": 100, "log_rotate_bytes": 4096})
    # Room for the current file, one file being gzipped and its output, and at least one archive.
    if s.log_max_bytes < 4 * s.log_rotate_bytes:
        raise ConfigError(
            "[storage].log_max_bytes",
            f"{s.log_max_bytes} is less than 4 x log_rotate_bytes ({s.log_rotate_bytes})",
            "make log_max_bytes at least 4 x log_rotate_bytes (10x is a good ratio), or rotate smaller files",
        )
    _floors(s, "[storage]", {"log_retention_days": 1, "fsync_interval_s": 0, "min_free_mb": 0})
    _one_of(s.store_prompts, ("none", "hash", "redacted"), "[storage].store_prompts")


def _check_providers(c: Config) -> None:
    for name, p in c.providers.items():
        where = f"[providers.{name}]"
        if not NAME_RE.match(name) or name in RESERVED_PROVIDER_NAMES:
            raise ConfigError(where, "the name is not usable as a path segment", "use letters, digits, - _ . only")
        _one_of(p.kind, tuple(DEFAULT_BASE_URLS), f"{where}.kind")
        if not re.match(r"^https?://[^/\s]+", p.base_url):
            raise ConfigError(
                f"{where}.base_url", f"{p.base_url!r} is not an http(s) URL", 'write e.g. "https://api.openai.com/v1"'
            )
        for key, example in _TIMEOUT_EXAMPLES.items():
            if getattr(p, key) <= 0:
                raise ConfigError(f"{where}.{key}", "must be positive", f"use e.g. {example}")
        _at_least(p.max_response_bytes, 65_536, f"{where}.max_response_bytes")
        for i, spec in enumerate(p.fallback):
            _check_target(spec, f"{where}.fallback[{i}]", c)


def _check_retry(c: Config) -> None:
    r = c.retry
    _floors(
        r,
        "[retry]",
        {
            "max_attempts": 1,
            "base_delay_s": 0,
            "max_delay_s": r.base_delay_s,
            "budget_ratio": 0,
            "min_retries_per_minute": 0,
            "circuit_failures": 0,
            "circuit_open_s": 0,
        },
    )


def _check_target(spec: str, key: str, c: Config) -> None:
    """A "provider/model" another call may go to: a configured provider and a model name."""
    provider, _, model = spec.partition("/")
    if not model or provider not in c.providers:
        known = ", ".join(sorted(c.providers))
        raise ConfigError(
            key,
            f"{spec!r} is not provider/model of a configured provider",
            f'write e.g. "openai/gpt-4o-mini"; providers: {known}',
        )


def _check_caps(b: BudgetConfig | WorkflowConfig, where: str, c: Config) -> None:
    """The caps and policies [budgets] and every [workflows.NAME] share."""
    _floors(b, where, {"daily_usd": 0, "monthly_usd": 0, "max_tokens_per_request": 0})
    _one_of(b.over_cap, ("clamp", "reject"), f"{where}.over_cap")
    _one_of(b.on_exceed, ("block", "alert", "downgrade"), f"{where}.on_exceed")
    if b.downgrade_to:
        _check_target(b.downgrade_to, f"{where}.downgrade_to", c)
    if b.on_exceed == "downgrade" and not (b.downgrade_to or c.budgets.downgrade_to):
        raise ConfigError(
            f"{where}.downgrade_to",
            'on_exceed = "downgrade" needs a model to go to',
            'set downgrade_to = "provider/model", e.g. "openai/gpt-4o-mini"',
        )
    _one_of(b.unpriced, ("block", "allow"), f"{where}.unpriced")
    _one_of(b.unmetered, ("block", "allow"), f"{where}.unmetered")
    for step in b.alert_at or ():
        if not 0 < step <= 10:
            raise ConfigError(
                f"{where}.alert_at", f"{step} is not a fraction of the cap", "use fractions like [0.5, 0.8, 1.0]"
            )


def _check_budgets(c: Config) -> None:
    _check_caps(c.budgets, "[budgets]", c)
    timezone = c.budgets.timezone
    if timezone == "local":
        return
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            "[budgets].timezone",
            f"{timezone!r} is not a known time zone",
            'use an IANA name like "Europe/Berlin", or "local"',
        ) from None


def _check_prices(c: Config) -> None:
    for model, price in c.prices.items():
        for key in _PRICE_KEYS:
            value = getattr(price, key)
            if value is not None and value < 0:
                raise ConfigError(
                    f'[prices."{model}"].{key}', "a price cannot be negative", "use dollars per 1M tokens, e.g. 0.15"
                )


def _check_workflows(c: Config) -> None:
    seen_keys: dict[str, str] = {}  # client key -> the workflow that holds it
    for name, w in c.workflows.items():
        where = f"[workflows.{name}]"
        _check_caps(w, where, c)
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


def _check_canary(c: Config) -> None:
    _at_least(c.canary.interval_s, 60, "[canary].interval_s")
    names: set[str] = set()
    for i, probe in enumerate(c.canary.probes):
        where = f"[[canary.probes]] #{i + 1}"
        if not probe.name or probe.name in names:
            raise ConfigError(f"{where}.name", "every probe needs a unique name", 'set name = "openai-mini"')
        names.add(probe.name)
        if probe.provider not in c.providers:
            raise ConfigError(
                f"{where}.provider", f"{probe.provider!r} is not a configured provider", "name a [providers.NAME] table"
            )
        _regex(probe.expect_regex, f"{where}.expect_regex")
        _floors(probe, where, {"fail_after": 1, "max_latency_s": 0.1, "max_tokens": 1})


def _check_alerts(c: Config) -> None:
    a = c.alerts
    _floors(
        a,
        "[alerts]",
        {
            "cooldown_s": 0,
            "spike_zscore": 0,
            "spike_min_usd": 0,
            "spike_min_pct": 0,
            "runaway_factor": 1,
            "duplicate_storm": 2,
            "error_rate_pct": 1,
            "loop_calls": 3,
            "loop_window_s": 1,
        },
    )
    if a.quiet_hours and not _QUIET_HOURS_RE.fullmatch(a.quiet_hours):
        raise ConfigError("[alerts].quiet_hours", f"{a.quiet_hours!r} is not HH:MM-HH:MM", 'write e.g. "23:00-07:00"')


_RULE_MATCHES = ("match_path", "match_model", "match_prompt")
_RULE_TAGS = ("workflow", "env", "tenant", "prompt_version")
SEVERITIES = ("info", "warning", "critical")


def _regex(pattern: str, key: str) -> None:
    try:
        re.compile(pattern)
    except re.error as e:
        raise ConfigError(
            key,
            f"{pattern!r} is not a valid regular expression ({e})",
            "fix the pattern, or escape its special characters",
        ) from None


def _check_rules(c: Config) -> None:
    for i, rule in enumerate(c.rules):
        where = f"[[rules]] #{i + 1}"
        for key in _RULE_MATCHES:
            _regex(getattr(rule, key), f"{where}.{key}")
        for name, pattern in rule.match_header.items():
            _regex(pattern, f"{where}.match_header.{name}")
        _one_of(rule.action, ("tag", "block"), f"{where}.action")
        for key in _RULE_TAGS:
            value = getattr(rule, key)
            if value and not NAME_RE.match(value):
                raise ConfigError(
                    f"{where}.{key}", f"{value!r} is not a usable name", "use letters, digits, - _ . only"
                )
        if rule.action == "tag" and not any(getattr(rule, key) for key in _RULE_TAGS):
            raise ConfigError(
                where,
                "a tag rule sets no tag",
                'set workflow = "...", env, tenant or prompt_version, or action = "block"',
            )


def _check_notify(c: Config) -> None:
    n = c.notify
    for name in ("ntfy", "gotify", "discord", "webhook"):
        channel = getattr(n, name)
        _one_of(channel.min_severity, SEVERITIES, f"[notify.{name}].min_severity")
        url = getattr(channel, "webhook_url" if name == "discord" else "url")
        if url and not is_reference(url) and not re.match(r"^https?://[^/\s]+", url):
            key = "webhook_url" if name == "discord" else "url"
            raise ConfigError(
                f"[notify.{name}].{key}", f"{url!r} is not an http(s) URL", 'write e.g. "https://ntfy.sh/my-topic"'
            )


def _check_telegram(c: Config) -> None:
    if c.telegram.enabled and not c.telegram.chat_ids:
        raise ConfigError(
            "[telegram].chat_ids",
            "Telegram is enabled but no chat may receive alerts",
            "add your chat id, e.g. chat_ids = [123456789]",
        )


def _check_cache(c: Config) -> None:
    _floors(c.cache, "[cache]", {"max_mb": 1, "ttl_s": 1})
    for i, name in enumerate(c.cache.workflows):
        if not NAME_RE.match(name):
            raise ConfigError(
                f"[cache].workflows[{i}]", f"{name!r} is not a usable workflow name", "use letters, digits, - _ . only"
            )


def _check_client_key(key: str, where: str) -> None:
    if key.startswith("sha256:"):
        if not re.fullmatch(r"sha256:[0-9a-f]{64}", key):
            raise ConfigError(
                where, "not a sha256:<64 hex digits> digest", "write sha256: followed by the lowercase hex digest"
            )
    elif not key.startswith("pm-") or len(key) < 16:
        raise ConfigError(
            where,
            "a client key must start with pm- and be at least 16 characters",
            'use e.g. "pm-" + a random string, or "sha256:<hex>"',
        )
