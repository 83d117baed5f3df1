"""The real `picometer` command in a subprocess, as a user runs it: one runner for every test."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any, Literal, overload

from tests.patience import patience

PICOMETER = [sys.executable, "-m", "picometer"]


@overload
def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60, text: Literal[True] = True
) -> subprocess.CompletedProcess[str]: ...
@overload
def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60, text: Literal[False]
) -> subprocess.CompletedProcess[bytes]: ...
def run(*args: str, env: dict[str, str] | None = None, timeout: float = 60, text: bool = True) -> Any:
    """`picometer ARGS...` with the caller's environment minus any PICOMETER_* setting of this machine."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PICOMETER")}
    full_env.update(env or {})
    return subprocess.run([*PICOMETER, *args], capture_output=True, text=text, env=full_env, timeout=patience(timeout))
