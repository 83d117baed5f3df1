"""Reading a config: find the file, turn its TOML tables into the section dataclasses, validate, resolve secrets."""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

from picometer.config.check import validate
from picometer.config.errors import ConfigError, shown
from picometer.config.places import Places, default_places
from picometer.config.secrets import with_secrets
from picometer.config.sections import (
    DEFAULT_BASE_URLS,
    FREE_KINDS,
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
    ServerConfig,
    StorageConfig,
    TelegramConfig,
    WebhookConfig,
    WorkflowConfig,
    default_providers,
)

DEFAULT_PATHS = (Path("/etc/picometer/config.toml"), Path("config.toml"))

# The sections that are one table of keys, in the order their errors are reported.
_SINGLE_TABLES: tuple[tuple[str, type[Any]], ...] = (
    ("server", ServerConfig),
    ("storage", StorageConfig),
    ("retry", RetryConfig),
    ("budgets", BudgetConfig),
    ("alerts", AlertsConfig),
    ("telegram", TelegramConfig),
    ("export", ExportConfig),
    ("cache", CacheConfig),
)
_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


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


def load_config(
    path: Path | None,
    env: Mapping[str, str] | None = None,
    *,
    resolve: bool = True,
    only: Collection[str] | None = None,
) -> Config:
    """Read, validate and (by default) resolve secrets, or only the secrets named in `only` (the commands
    that never call a provider resolve just the admin token). Directories the file leaves out follow who
    runs picometer (config.places). Raises ConfigError."""
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
    raw = with_default_places(raw, default_places(env, os.geteuid(), env.get("HOME") or str(Path.home())))
    config = config_from_dict(raw, source=str(path) if path else "")
    return with_secrets(config, env, only) if resolve else config


def with_default_places(raw: Mapping[str, Any], places: Places) -> dict[str, Any]:
    """The parsed file with the directories it leaves out filled in."""
    out = dict(raw)
    storage, export = raw.get("storage", {}), raw.get("export", {})
    if isinstance(storage, Mapping):
        out["storage"] = {"data_dir": places.data_dir, "log_dir": places.log_dir, **storage}
    if isinstance(export, Mapping):
        out["export"] = {"dir": places.export_dir, **export}
    return out


def config_from_dict(raw: Mapping[str, Any], source: str = "") -> Config:
    """A validated Config from parsed TOML, secrets not resolved. Raises ConfigError."""
    known = {f.name for f in dataclasses.fields(Config)} - {"source", "secrets"}
    for key in raw:
        if key not in known:
            raise ConfigError(f"[{key}]", "unknown section", f"remove it; known sections: {', '.join(sorted(known))}")
    sections: dict[str, Any] = {
        name: _build(cls, _table(raw, name, f"[{name}]"), f"[{name}]") for name, cls in _SINGLE_TABLES
    }
    sections["providers"] = (
        _named_tables(raw, "providers", ProviderConfig, "[providers.{}]", _kind_defaults)
        if "providers" in raw
        else default_providers()
    )
    # A model name may hold dots, so its table name is quoted.
    sections["prices"] = _named_tables(raw, "prices", PriceConfig, '[prices."{}"]')
    sections["workflows"] = _named_tables(raw, "workflows", WorkflowConfig, "[workflows.{}]")
    sections["canary"] = _canary(_table(raw, "canary", "[canary]"))
    sections["rules"] = _rules(raw.get("rules", []))
    sections["notify"] = _notify(_table(raw, "notify", "[notify]"))
    config = Config(**sections, source=source)
    validate(config)
    return config


def _named_tables(
    raw: Mapping[str, Any],
    section: str,
    cls: type[Any],
    where: str,
    defaults: Callable[[Mapping[str, Any]], Mapping[str, Any]] = dict,
) -> Mapping[str, Any]:
    """One `cls` per [section.NAME] table; `where` is how an error names that table, with {} for NAME;
    `defaults` fills in keys whose default depends on the table's other keys."""
    return types.MappingProxyType(
        {
            name: _build(cls, defaults(_table(raw[section], name, where.format(name))), where.format(name))
            for name in _table(raw, section, f"[{section}]")
        }
    )


def _kind_defaults(table: Mapping[str, Any]) -> Mapping[str, Any]:
    """A provider's base URL, and whether it is free, follow its kind unless the table says otherwise."""
    kind = table.get("kind", "openai")
    if not isinstance(kind, str) or kind not in DEFAULT_BASE_URLS:
        return table  # validation names the bad kind
    return {"base_url": DEFAULT_BASE_URLS[kind], "free": kind in FREE_KINDS, **table}


def _rules(raw: Any) -> tuple[RuleConfig, ...]:
    if not isinstance(raw, list):
        raise ConfigError("[[rules]]", "must be an array of tables", "write each rule as [[rules]]")
    rules = []
    for i, entry in enumerate(raw):
        where = f"[[rules]] #{i + 1}"
        keys = dict(_as_table(entry, where))
        headers = _as_table(keys.pop("match_header", {}), f"{where}.match_header")
        for name, pattern in headers.items():
            if not isinstance(pattern, str):
                raise ConfigError(
                    f"{where}.match_header",
                    f"{name!r} must be a regex string",
                    'write e.g. {"User-Agent" = "^PicoClaw"}',
                )
        rule: RuleConfig = _build(RuleConfig, keys, where, skip={"match_header"})
        rules.append(dataclasses.replace(rule, match_header=types.MappingProxyType(dict(headers))))
    return tuple(rules)


_CHANNELS: tuple[tuple[str, type[Any]], ...] = (
    ("ntfy", NtfyConfig),
    ("gotify", GotifyConfig),
    ("discord", DiscordConfig),
    ("webhook", WebhookConfig),
)


def _notify(raw: Mapping[str, Any]) -> NotifyConfig:
    known = [name for name, _ in _CHANNELS]
    for key in raw:
        if key not in known:
            raise ConfigError(f"[notify.{key}]", "unknown channel", f"remove it; known channels: {', '.join(known)}")
    channels = {name: _build(cls, _table(raw, name, f"[notify.{name}]"), f"[notify.{name}]") for name, cls in _CHANNELS}
    return NotifyConfig(**channels)


def _canary(raw: Mapping[str, Any]) -> CanaryConfig:
    keys = dict(raw)
    probes_raw = keys.pop("probes", [])
    if not isinstance(probes_raw, list):
        raise ConfigError("[[canary.probes]]", "must be an array of tables", "write each probe as [[canary.probes]]")
    probes = tuple(
        _build(ProbeConfig, _as_table(p, f"[[canary.probes]] #{i + 1}"), f"[[canary.probes]] #{i + 1}")
        for i, p in enumerate(probes_raw)
    )
    canary: CanaryConfig = _build(CanaryConfig, keys, "[canary]", skip={"probes"})
    return dataclasses.replace(canary, probes=probes)


def _table(raw: Mapping[str, Any], name: str, where: str) -> Mapping[str, Any]:
    return _as_table(raw.get(name, {}), where)


def _as_table(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(where, f"must be a table, got {type(value).__name__}", f"write it as {where} with keys below")
    return value


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
            raise ConfigError(key, f"must be a list, got {shown(key, value)}", f"write it as [{_example(args[0])}]")
        return tuple(_coerce(v, args[0], key) for v in value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    # bool is a subclass of int in Python, but `true` is never a valid number here.
    if not isinstance(value, hint) or (isinstance(value, bool) and hint is not bool):
        raise ConfigError(
            key, f"must be {_TYPE_NAMES.get(hint, hint)}, got {shown(key, value)}", f"write e.g. {_example(hint)}"
        )
    return value


def _example(hint: Any) -> str:
    return {str: '"text"', int: "10", float: "1.5", bool: "true"}.get(hint, "a value")
