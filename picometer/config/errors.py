"""How a config problem is told: the key, what is wrong and the fix, never echoing a secret."""

from __future__ import annotations

import re
from typing import Any

_SECRET_NAMES = re.compile(r"(api_key|admin_token|bot_token|token|secret|keys|client_keys|webhook_url)(\[\d+\])?$")


class ConfigError(Exception):
    """A config problem, phrased as key, what is wrong, and how to fix it."""

    def __init__(self, key: str, problem: str, fix: str) -> None:
        self.key, self.problem, self.fix = key, problem, fix
        super().__init__(f"{key}: {problem}. Fix: {fix}")


def shown(key: str, value: Any) -> str:
    """A config value for an error message; one under a secret's key is never echoed."""
    if _SECRET_NAMES.search(key):
        return f"a value of type {type(value).__name__} (not shown: this key holds a secret)"
    return repr(value)
