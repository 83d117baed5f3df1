"""Talking to systemd (sd_notify): READY, WATCHDOG from the event loop, STATUS, RELOADING, STOPPING.

Without NOTIFY_SOCKET (not under systemd, or Type=simple) every call is a no-op.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping

from sdnotify import SystemdNotifier


class Notifier:
    def __init__(self, env: Mapping[str, str]) -> None:
        self._sd = SystemdNotifier() if env.get("NOTIFY_SOCKET") else None
        usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
        mine = not pid or (pid.isdigit() and int(pid) == os.getpid())
        self.watchdog_s = int(usec) / 1e6 if usec.isdigit() and int(usec) > 0 and mine else None
        self._status = ""

    @property
    def enabled(self) -> bool:
        return self._sd is not None

    def send(self, *fields: str) -> None:
        if self._sd is not None:
            self._sd.notify("\n".join(fields))

    def ready(self, status: str) -> None:
        self._status = status
        self.send("READY=1", f"STATUS={status}")

    def status(self, text: str) -> None:
        if text != self._status:  # a datagram only when the line changes
            self._status = text
            self.send(f"STATUS={text}")

    def reloading(self) -> None:
        # MONOTONIC_USEC lets systemd match this to its reload request (needed by Type=notify-reload).
        self.send("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}", "STATUS=reloading the config")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping: finishing the requests in flight")

    async def watchdog(self) -> None:
        """WATCHDOG=1 at half the interval, from the event loop itself: a stuck loop stops the pings."""
        if self.watchdog_s is None or self._sd is None:
            return
        while True:
            self.send("WATCHDOG=1")
            await asyncio.sleep(self.watchdog_s / 2)
