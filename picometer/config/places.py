"""Where picometer keeps its files when the config does not say: by who runs it.

Under systemd, the unit's StateDirectory/LogsDirectory; as root, /var/lib/picometer and /var/log/picometer;
as anyone else, $XDG_STATE_HOME/picometer (else ~/.local/state/picometer) with logs/ and exports/ inside,
so a normal user's first `picometer run` works out of the box."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Places:
    data_dir: str
    log_dir: str
    export_dir: str


def default_places(env: Mapping[str, str], uid: int, home: str) -> Places:
    """The directories for data, logs and exports of whoever runs picometer now."""
    state = _first(env.get("STATE_DIRECTORY"))
    if state:  # systemd made these for the unit and owns them for its user
        logs = _first(env.get("LOGS_DIRECTORY")) or "/var/log/picometer"
        return Places(state, logs, f"{state}/exports")
    if uid == 0:
        return Places("/var/lib/picometer", "/var/log/picometer", "/var/lib/picometer/exports")
    base = Path(env.get("XDG_STATE_HOME") or Path(home) / ".local" / "state") / "picometer"
    return Places(str(base), str(base / "logs"), str(base / "exports"))


def _first(value: str | None) -> str | None:
    """systemd lists several directories with ":" between them; picometer asks for one."""
    return value.split(":", 1)[0] if value else None
