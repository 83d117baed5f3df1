"""The effective config as `picometer check` prints it: plain TOML-able data, secrets masked."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from picometer.config.secrets import is_reference, secret_refs
from picometer.config.sections import Config


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
    if isinstance(obj, Mapping):
        return {k: _plain(v) for k, v in obj.items()}
    return obj
