"""Secret references: which keys hold one, and env:/file:/credential: (systemd credentials) read into a Secret."""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Collection, Mapping
from pathlib import Path

from picometer.config.errors import ConfigError
from picometer.config.sections import Config, Secret

CREDENTIALS_FALLBACK_DIR = Path("/etc/picometer/credentials")


def secret_refs(c: Config) -> dict[str, str]:
    """Every secret reference that the config needs resolved, by dotted key."""
    refs = {f"providers.{name}.api_key": p.api_key for name, p in c.providers.items() if p.api_key}
    if c.telegram.enabled:
        refs["telegram.bot_token"] = c.telegram.bot_token
    n = c.notify
    for key, ref in (
        ("notify.ntfy.token", n.ntfy.token),
        ("notify.gotify.token", n.gotify.token),
        ("notify.discord.webhook_url", n.discord.webhook_url),
        ("notify.webhook.secret", n.webhook.secret),
    ):
        if ref:
            refs[key] = ref
    if c.server.admin_token:
        refs["server.admin_token"] = c.server.admin_token
    return refs


def is_reference(ref: str) -> bool:
    return ref.startswith(("env:", "file:", "credential:"))


def with_secrets(config: Config, env: Mapping[str, str], only: Collection[str] | None = None) -> Config:
    return dataclasses.replace(config, secrets=types.MappingProxyType(resolve_secrets(config, env, only)))


def resolve_secrets(c: Config, env: Mapping[str, str], only: Collection[str] | None = None) -> dict[str, Secret]:
    """Every secret reference resolved, or only those named in `only`."""
    refs = secret_refs(c).items()
    return {key: resolve_secret(ref, key, env) for key, ref in refs if only is None or key in only}


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
