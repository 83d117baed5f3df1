"""Reload rules: what a running daemon takes from a re-read config, and what waits for the next start."""

from __future__ import annotations

import dataclasses
import types
from typing import Any, Protocol

from picometer.config.check import validate
from picometer.config.sections import Config


def restart_needed(old: Config, new: Config) -> list[str]:
    """Keys that changed but take effect only at the next start: the listener, storage, the budget calendar,
    the Telegram bot (its connection is made once) and the alert channels (their queues are set up once).
    [cache] is taken live: its store opens on first use and resizes in place (cache.store.CacheStore)."""
    keys = []
    if old.server.listen != new.server.listen:
        keys.append("server.listen")
    keys += _changed("storage", old.storage, new.storage)
    if old.budgets.timezone != new.budgets.timezone:
        keys.append("budgets.timezone")
    keys += _changed("telegram", old.telegram, new.telegram)
    for channel in ("ntfy", "gotify", "discord", "webhook"):
        keys += _changed(f"notify.{channel}", getattr(old.notify, channel), getattr(new.notify, channel))
    return keys


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
        notify=old.notify,
        secrets=types.MappingProxyType(
            {k: v for k, v in new.secrets.items() if not _kept_secret(k)}
            | {k: v for k, v in old.secrets.items() if _kept_secret(k)}
        ),
    )
    validate(kept)  # e.g. client keys dropped while the running listener is still on the network
    return kept


def _kept_secret(key: str) -> bool:
    """A secret of a part that keeps its config until the next start."""
    return key == "telegram.bot_token" or key.startswith("notify.")


class Reloadable(Protocol):
    """A part that takes a reloaded config while running (SIGHUP, `systemctl reload`): the daemon walks them."""

    def reconfigure(self, config: Config) -> None: ...
