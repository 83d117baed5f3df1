"""What every `picometer` command shares: the --config option, loading the config, the admin token."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from picometer.config import Config, ConfigError, find_config_path, load_config

F = TypeVar("F", bound=Callable[..., Any])


def config_option(f: F) -> F:
    return click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False),
        default=None,
        help="Config file (default: $PICOMETER_CONFIG, /etc/picometer/config.toml, ./config.toml).",
    )(f)


KEYLESS = ("server.admin_token",)  # the only secret a command that never calls a provider may need


def load(config_path: str | None, *, resolve: bool = True, keyless: bool = False) -> Config:
    """The config, or exit 2 with the key and the fix. `keyless`: provider keys are not resolved (a command
    that only reads state or talks to the daemon works without them)."""
    ctx = click.get_current_context()
    explicit = config_path or (ctx.obj or {}).get("config_path")
    path = find_config_path(explicit, os.environ)
    try:
        return load_config(path, resolve=resolve, only=KEYLESS if keyless else None)
    except ConfigError as e:
        click.echo(f"picometer: config error in {path or 'built-in defaults'}: {e}", err=True)
        sys.exit(2)


def control_headers(config: Config) -> dict[str, str]:
    """What the daemon's control routes need: the admin token, when one is set."""
    token = config.secrets.get("server.admin_token")
    return {} if token is None else {"authorization": f"Bearer {token.value}"}
