"""`picometer pause` and `resume`: through the running daemon, or over its state file when it is down, with
the same operation and the same words either way."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from picometer.cli.common import control_headers
from picometer.config import Config

if TYPE_CHECKING:
    from picometer import ops
    from picometer.store.state import State


def switch(config: Config, action: str, workflow: str, duration: str | None, force: bool = False) -> None:
    """Pause or resume through the running daemon; when it is down, straight into its state file."""
    from datetime import UTC
    from urllib.parse import quote

    import httpx

    from picometer import ops
    from picometer.duration import parse_duration

    try:
        length = parse_duration(duration) if duration else None
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--for") from None
    headers = {"x-picometer-by": "cli", **control_headers(config)}
    url = f"{config.server.url}/-/{action}/{quote(workflow, safe='')}"
    try:
        options = {"for": duration, "force": force} if action == "pause" else None
        answer = httpx.post(url, json=options, headers=headers, timeout=5, trust_env=False)
    except httpx.TransportError:
        answer = None
    if answer is not None:
        try:
            data = answer.json()
        except ValueError:
            data = {}
        if answer.status_code != 200 or not data:
            error = data.get("error", {})
            if error.get("code") == "unknown_workflow":
                _typo(error["message"], workflow)
            click.echo(
                f"picometer refused: {error.get('message') or f'HTTP {answer.status_code} from {url}'}", err=True
            )
            sys.exit(1)
        _said(ops.Switched.from_dict(data), config.budgets.timezone)
        return
    import sqlite3

    from picometer.logs import configure_logging
    from picometer.store.state import State

    configure_logging("error")  # stdout is for the answer

    path = Path(config.storage.data_dir) / "state.db"
    try:
        state = State(path)
    except (OSError, sqlite3.Error) as e:
        click.echo(f"picometer is not running at {url}, and its state file {path} cannot be written: {e}", err=True)
        sys.exit(1)
    try:
        now = datetime.now(UTC)
        if action == "pause" and not force:
            typo = ops.unknown(workflow, _known_from_files(config, state, now))
            if typo is not None:
                _typo(typo, workflow)  # the state file is closed on the way out
        if action == "resume":
            done = ops.resume(state, workflow, "cli", now)
        else:
            done = ops.pause(state, workflow, now + length if length else None, "cli", now)
    finally:
        state.close()
    if done.warning is not None:
        click.echo(f"picometer is not running at {url}, and {done.warning}", err=True)
        sys.exit(1)
    _said(done, config.budgets.timezone)
    click.echo("(picometer is not running: this is stored and holds when it starts)", err=True)


def _typo(message: str, workflow: str) -> NoReturn:
    click.echo(f"not paused: {message} (picometer pause {workflow} --force)", err=True)
    sys.exit(1)


def _known_from_files(config: Config, state: State, now: datetime) -> set[str]:
    """The workflow names on disk while the daemon is down: configured, in the rollups, paused."""
    from picometer import ops
    from picometer.store.rollups import Rollups

    path = Path(config.storage.data_dir) / "rollups.db"
    rollups = Rollups(path) if path.exists() else None
    try:
        return ops.known_workflows(config, rollups, state, now)
    finally:
        if rollups is not None:
            rollups.close()


def _said(done: ops.Switched, zone_name: str) -> None:
    """A pause or resume (the daemon's answer, or the same operation over the state file), in the words every
    face uses."""
    from picometer.clock import resolve_zone

    click.echo(done.sentence(resolve_zone(zone_name)))
    if done.warning:
        click.echo(f"warning: {done.warning}", err=True)
