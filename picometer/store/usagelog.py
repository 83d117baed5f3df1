"""The usage log: one JSON line per record, appended with a single write()."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import structlog

from picometer.clock import Clock
from picometer.record import Record

log = structlog.get_logger("picometer.usagelog")


class UsageLog:
    """Appends records to {log_dir}/usage-YYYYMMDD-HHMMSS.jsonl (the file opened at start)."""

    def __init__(self, log_dir: Path, clock: Clock) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.path = log_dir / clock.now().strftime("usage-%Y%m%d-%H%M%S.jsonl")
        # O_APPEND: one write() per line lands whole even if another writer shares the file.
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        self.written = 0
        self.dropped = 0

    def __call__(self, record: Record) -> None:
        line = (record.to_json() + "\n").encode("utf-8", "surrogateescape")
        try:
            os.write(self._fd, line)
            self.written += 1
        except OSError as e:
            self.dropped += 1
            if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO):
                log.warning("usage record dropped", path=str(self.path), error=e.strerror)
            else:
                raise

    def close(self) -> None:
        os.fsync(self._fd)
        os.close(self._fd)
